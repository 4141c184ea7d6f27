"""
A pipe: the messages it holds in arrival order (bounded by the pipe depth,
oldest dropped), the waiters of its next message, and its one consumer,
pushed to until it refuses and resumed when it asks (L{Consumption}).

Delivery is the hot path: L{Pipe.arrive} runs once per message a pipe
receives, L{Pipe._pump} once per message handed to a consumer.
"""

from __future__ import annotations

from collections import deque
from typing import Dict, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from rocketd.engine.memory._core import Resource, bracket, operation
from rocketd.engine.memory._held import HeldMessage
from rocketd.engine.memory._join import Join, checkJoin, joinKey, newJoin
from rocketd.errors import Conflict, InvalidArgument, NoSuchResource
from rocketd.interfaces import IPipe

#: The held messages of a pipe that never held one.
_NO_ORDER = ()


class Consumption:
    """The handle of a pipe's consumer (see L{Pipe.consume})."""

    __slots__ = ("pipe", "consumer", "paused", "ended")

    def __init__(self, pipe, consumer):
        self.pipe = pipe
        self.consumer = consumer
        self.paused = False
        self.ended = Deferred()

    def _end(self, deleted: bool):
        if not self.ended.called:
            self.ended.callback(deleted)

    @property
    def active(self):
        return self.pipe._consumer is self

    def stop(self):
        """Detach the consumer; the held messages stay in the pipe."""
        if self.pipe._consumer is self:
            self.pipe._consumer = None
            self._end(False)

    def resume(self):
        """Deliver again after the consumer returned False."""
        if not self.paused or self.pipe._consumer is not self:
            return
        self.paused = False
        self.pipe._resume()


@implementer(IPipe)
class Pipe(Resource):
    """
    A pipe: held messages in arrival order, waiters, one consumer.

    Engine-internal: C{core}, C{home} (the L{Domain}), C{deleted},
    C{asyncletSince} (when the pending asynclet was drawn), C{queued} and
    L{fire} (the flush's), L{ready} and L{arrive} (the routers' and the
    rotation's), L{holds}, L{attach}, L{forgetJoin}, L{eventHeaders},
    L{cancelWaits}, L{destroy}.
    """

    def __init__(self, domain, type: str, title: str):
        core = domain.core
        now = core.clock.seconds()
        self.core = core
        self.home = domain
        self.hash = self.name = core.drawHash()
        self.type = type
        self.title = title
        self.domain = domain.name
        self.created = self.modified = now
        self.version = 1
        self.dropped = 0
        self._ondemand = type == "ondemand"
        self._depth = core.pipeDepth
        self._held: Dict[str, HeldMessage] = {}
        # The held messages in arrival order: a deque from the first
        # arrival on (an idle pipe, a browser's stream, costs no deque).
        self._order = _NO_ORDER
        self._sequence = 0
        self._joins: Dict[Join, None] = {}
        self._joinKeys: Dict[tuple, Join] = {}
        self._waiters: Dict[str, list] = {}
        self._waiting = 0
        self._consumer: Optional[Consumption] = None
        self._pumping = False
        self.queued = False
        self.deleted = False
        self.asynclet = core.drawHash()
        self.asyncletSince = now
        core.registry[self.hash] = self
        core.registry[self.asynclet] = self

    def __repr__(self):
        return f"<Pipe {self.hash} ({self.type}) in {self.domain!r}>"

    @property
    def consumed(self):
        return self._consumer is not None

    def _checkLive(self):
        if self.deleted:
            raise NoSuchResource("The pipe was deleted.")

    def eventHeaders(self):
        return {"hash": self.hash, "name": self.name, "type": self.type, "domain": self.domain}

    def attach(self, join):
        """Link a new join into this pipe and its feed."""
        self._joins[join] = None
        self._joinKeys[join.key] = join
        join.feed.addJoin(join)
        self.core.registry[join.hash] = join
        self.touch()

    def forgetJoin(self, join):
        """A join of this pipe is gone."""
        self._joins.pop(join, None)
        if self._joinKeys.get(join.key) is join:
            del self._joinKeys[join.key]
        if not self.deleted:
            self.touch()

    def holds(self, held) -> bool:
        """Whether a held message is still in this pipe."""
        return self._held.get(held.hash) is held

    # -- arrivals and readiness --

    def ready(self) -> bool:
        """Whether a rotator or service feed may hand this pipe a message."""
        if not self._ondemand:
            return True
        if self._held:
            return False
        consumer = self._consumer
        return self._waiting > 0 or (consumer is not None and not consumer.paused)

    def arrive(self, message, now):
        """Hold a routed message under the asynclet's hash; draw the next asynclet."""
        core = self.core
        hash = self.asynclet
        following = core.drawHash()
        self._sequence += 1
        held = HeldMessage(hash, message, self, self._sequence, following, now)
        registry = core.registry
        registry[hash] = held
        registry[following] = self
        self.asynclet = following
        self.asyncletSince = now
        order = self._order
        if order is _NO_ORDER:
            order = self._order = deque()
        elif len(order) >= self._depth:
            self._dropOldest()
        order.append(held)
        self._held[hash] = held
        self.modified = now
        self.version += 1
        core.stats["delivered"] += 1
        if (self._waiting or self._consumer is not None) and not self.queued:
            self.queued = True
            core.pending.append(self)

    def _dropOldest(self):
        held = self._order.popleft()
        del self._held[held.hash]
        core = self.core
        core.registry.pop(held.hash, None)
        self.dropped += 1
        core.countDropped(1)
        core.pipeDrops.count(self.hash, 1, pipe=self.hash, domain=self.domain, dropped=self.dropped)

    def _pull(self):
        """An ondemand pipe that is ready takes a message from its rotator/service feeds."""
        if not self._ondemand:
            return
        for join in list(self._joins):
            if not self.ready():
                return
            if not join.deleted and join.feed.rotation is not None:
                join.feed.drainFor(join)

    def fire(self):
        """Serve the waiters whose message arrived, then the consumer."""
        if self.deleted:
            return
        if self._waiters:
            current = self.asynclet
            for hash in [h for h in self._waiters if h != current]:
                waiters = self._waiters.pop(hash)
                self._waiting -= len(waiters)
                held = self._held.get(hash)
                for d in waiters:
                    if held is not None:
                        d.callback(held)
                    else:
                        d.errback(Failure(NoSuchResource("That message was dropped before it could be read.")))
        if self._consumer is not None:
            self._pump()

    def _pump(self):
        """
        Hand held messages to the consumer, oldest first, until paused or
        empty; each handed message is removed (this loop runs once per
        delivery to a stream pipe, so it is written out in full).
        """
        if self._pumping:
            return
        self._pumping = True
        core = self.core
        registry = core.registry
        heldByHash = self._held  # the same dict for the pipe's life
        try:
            while not self.deleted and self._order:
                handle = self._consumer
                if handle is None or handle.paused:
                    break
                order = self._order
                held = order[0]
                try:
                    result = handle.consumer(held)
                except Exception:
                    core.log.failure("A pipe consumer failed", pipe=self.hash)
                    result = None
                if result is False:
                    handle.paused = True
                    break
                # Remove it: the head, unless the consumer changed the pipe.
                if heldByHash.pop(held.hash, None) is not None:
                    if order[0] is held:
                        order.popleft()
                    else:
                        order.remove(held)
                    registry.pop(held.hash, None)
                    now = core.now
                    self.modified = core.clock.seconds() if now is None else now
                    self.version += 1
                if self._ondemand:
                    self._pull()
        finally:
            self._pumping = False

    def _resume(self):
        """Deliver again (L{Consumption.resume}), serving what that notifies when it ends."""
        self._pump()
        self._pull()

    _resume = bracket(_resume, answers=False)

    def cancelWaits(self):
        for waiters in list(self._waiters.values()):
            for d in list(waiters):
                d.cancel()

    def destroy(self):
        """The pipe is deleted (or its domain is): detach its joins, fail its waiters, end its consumer."""
        self.deleted = True
        for join in list(self._joins):
            join.detach()
        registry = self.core.registry
        for held in self._order:
            registry.pop(held.hash, None)
        self._order = _NO_ORDER
        self._held.clear()
        registry.pop(self.asynclet, None)
        registry.pop(self.hash, None)
        consumer, self._consumer = self._consumer, None
        waiters, self._waiters, self._waiting = self._waiters, {}, 0
        for ds in waiters.values():
            for d in ds:
                d.errback(Failure(NoSuchResource("The pipe was deleted.")))
        domain = self.home
        domain.removePipe(self)
        self.core.log.debug("Pipe {hash} deleted", hash=self.hash)
        domain.emit("pipe", "deleted", self.eventHeaders())
        if consumer is not None:
            consumer._end(True)

    # -- IPipe --

    @operation
    def join(self, feed, address="*", headers=None, predicate=None):
        self._checkLive()
        headers = checkJoin(self, feed, address, headers, predicate)
        existing = self._joinKeys.get(joinKey(feed, address, headers, predicate))
        if existing is not None:
            return (existing, False)
        join = newJoin(self, feed, address, headers, predicate)
        self.attach(join)
        join.emit("created")
        if feed.rotation is not None:
            feed.drainFor(join)
        return (join, True)

    @operation
    def listJoins(self):
        self._checkLive()
        return list(self._joins)

    @operation
    def listMessages(self):
        self._checkLive()
        return list(self._order)

    @operation
    def wait(self, hash=None):
        self._checkLive()
        if hash is None:
            hash = self.asynclet
        held = self._held.get(hash) if isinstance(hash, str) else None
        if held is not None:
            return held
        if hash != self.asynclet:
            raise NoSuchResource("That message is not in this pipe.")

        def cancel(d):
            waiters = self._waiters.get(hash)
            if waiters is not None and d in waiters:
                waiters.remove(d)
                self._waiting -= 1
                if not waiters:
                    del self._waiters[hash]

        d = Deferred(cancel)
        self._waiters.setdefault(hash, []).append(d)
        self._waiting += 1
        self._pull()
        return d

    @operation
    def remove(self, hash):
        self._checkLive()
        if not isinstance(hash, str) or hash not in self._held:
            return 0
        registry = self.core.registry
        removed = 0
        while True:
            held = self._order.popleft()
            del self._held[held.hash]
            registry.pop(held.hash, None)
            removed += 1
            if held.hash == hash:
                break
        self.touch()
        self._pull()
        return removed

    @operation
    def consume(self, consumer):
        self._checkLive()
        if not callable(consumer):
            raise InvalidArgument("A consumer must be callable.")
        if self._consumer is not None:
            raise Conflict("The pipe already has a consumer.")
        handle = self._consumer = Consumption(self, consumer)
        self._pump()
        self._pull()
        return handle

    @operation
    def delete(self):
        if not self.deleted:
            self.destroy()
