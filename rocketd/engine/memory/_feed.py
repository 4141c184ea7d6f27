"""
A feed: where messages are published and routed to the pipes whose joins
take them, through its type's router (L{rocketd.engine.memory._routers})
or, for rotator and service feeds, its L{Rotation}; and a fanout feed's
listeners (L{Fan}), served like pipes when the operation ends.

Routing is the hot path: L{Feed.route} runs once per message and calls
each reached pipe's C{arrive} directly.
"""

from __future__ import annotations

from typing import Dict, Optional

from twisted.internet.defer import Deferred
from zope.interface import implementer

from rocketd.engine.memory._core import MISSING, ROTATING, Resource, checkText, log, operation
from rocketd.engine.memory._rotation import Rotation
from rocketd.engine.memory._routers import ROUTERS
from rocketd.engine.memory._staging import Shelf
from rocketd.engine.message import Message
from rocketd.errors import Forbidden, InvalidArgument, NoSuchResource
from rocketd.interfaces import IFeed


@implementer(IFeed)
class Feed(Resource):
    """
    A feed of any type; the type decides how L{route} picks joins.

    Engine-internal: C{core}, C{home} (the L{Domain}), C{deleted},
    C{rotation} (a rotator or service feed's L{Rotation}, else None),
    C{shelf} (the staged contents), L{eventHeaders}, L{addJoin},
    L{removeJoin}, L{reap}, L{drainFor}, L{route}, L{destroy}, L{stop}.
    """

    def __init__(self, domain, name, type, title, license, isDefault=False, backlog=None, backlogAge=None):
        core = domain.core
        self.core = core
        self.home = domain
        self.hash = core.drawHash()
        self.name = name
        self.type = type
        self.title = title
        self.license = license
        self.domain = domain.name
        self.isDefault = isDefault
        self.dropped = 0
        self.created = self.modified = core.clock.seconds()
        self.version = 1
        self.deleted = False
        self._joins: Dict[object, None] = {}
        self._pipeJoins: Dict[object, int] = {}
        self._shared = 0  # pipes with more than one join onto this feed
        self.shelf = Shelf(core, self)
        self._fan: Optional[Fan] = None
        if type in ROTATING:
            self._router = None
            self.rotation = Rotation(
                core.clock,
                core.feedBacklog if backlog is None else backlog,
                core.backlogAge if backlogAge is None else backlogAge,
                self._dropFromBacklog,
            )
        else:
            self._router = ROUTERS[type]()
            self.rotation = None

    def __repr__(self):
        return f"<Feed {self.name or self.hash} ({self.type}) in {self.domain!r}>"

    def _checkLive(self):
        if self.deleted:
            raise NoSuchResource("The feed was deleted.")

    def eventHeaders(self):
        return {"hash": self.hash, "name": self.name or "", "type": self.type, "domain": self.domain}

    def _dropFromBacklog(self, n):
        self.dropped += n
        core = self.core
        core.countDropped(n)
        if not self.deleted:
            # The count is in the feed's document. (A backlog deleted with
            # its feed is counted, not warned about.)
            self.version += 1
            self.modified = core.clock.seconds()
            core.feedDrops.count(self.hash, n, feed=self.name or self.hash, domain=self.domain, dropped=self.dropped)

    # -- joins --

    def addJoin(self, join):
        self._joins[join] = None
        count = self._pipeJoins.get(join.pipe, 0) + 1
        self._pipeJoins[join.pipe] = count
        if count == 2:
            self._shared += 1
        if self._router is not None:
            self._router.add(join)
        else:
            self.rotation.add(join)

    def removeJoin(self, join):
        if self._joins.pop(join, MISSING) is MISSING:
            return
        count = self._pipeJoins[join.pipe] - 1
        if count:
            self._pipeJoins[join.pipe] = count
        else:
            del self._pipeJoins[join.pipe]
        if count == 1:
            self._shared -= 1
        if self._router is not None:
            self._router.remove(join)
        else:
            self.rotation.remove(join)

    def reap(self):
        """A service feed that no join is left on goes."""
        if self.type == "service" and not self._joins and not self.deleted:
            self.destroy()

    def drainFor(self, join) -> int:
        """Give a new or newly ready join what the backlog holds for it."""
        if self.rotation is None or self.deleted:
            return 0
        return self.rotation.drainFor(join, self.core.clock.seconds())

    # -- routing --

    def route(self, message, now) -> int:
        """Route one message (its C{feed} already set); return the deliveries."""
        if self.rotation is not None:
            return self._rotate(message, now)
        fan = self._fan
        if fan is not None and fan.listeners:
            fan.messages.append(message)
            if not fan.queued:
                fan.queued = True
                self.core.pending.append(fan)
        delivered = 0
        joins = self._router.match(message)
        if self._shared:
            seen = set()
            for join in joins:
                pipe = join.pipe
                if pipe in seen or (join.regex is not None and join.regex.fullmatch(message.address) is None):
                    continue
                seen.add(pipe)
                pipe.arrive(message, now)
                delivered += 1
        else:
            for join in joins:
                if join.regex is not None and join.regex.fullmatch(message.address) is None:
                    continue
                join.pipe.arrive(message, now)
                delivered += 1
        if self.isDefault:
            target = self.home.feedsByName.get(message.address)
            if target is not None and target.rotation is not None:
                delivered += target._rotate(message, now)
        return delivered

    def _rotate(self, message, now) -> int:
        rotation = self.rotation
        join = rotation.pick(message)
        if join is not None:
            join.pipe.arrive(message, now)
            return 1
        rotation.keep(message, now)
        return 0

    # -- IFeed --

    @operation
    def update(self, title=None, license=None):
        self._checkLive()
        if self.isDefault:
            raise Forbidden("The default feed can't be changed.")
        if title is not None:
            checkText(title, "title")
        if license is not None:
            checkText(license, "license")
        if title is not None:
            self.title = title
        if license is not None:
            self.license = license
        self.touch()
        return self

    @operation
    def delete(self):
        if self.isDefault:
            raise Forbidden("The default feed can't be deleted.")
        if not self.deleted:
            self.destroy()

    def destroy(self):
        """The feed is deleted (or its domain is): detach its joins, drop what it keeps."""
        self.deleted = True
        for join in list(self._joins):
            join.detach()
        self.shelf.clear()
        if self.rotation is not None:
            lost = self.rotation.stop()
            if lost:
                self._dropFromBacklog(lost)
        if self._fan is not None:
            self._fan.closing = True
            self.core.notify(self._fan)
        self.home.removeFeed(self)
        self.core.log.debug("Feed {hash} deleted", hash=self.hash)
        self.home.emit("feed", "deleted", self.eventHeaders())

    def stop(self):
        """The engine stops: cancel the backlog's timer."""
        if self.rotation is not None:
            self.rotation.stop()

    @operation
    def publish(self, messages):
        self._checkLive()
        if self.type == "system":
            raise Forbidden("Only the server publishes to a system feed.")
        messages = list(messages)
        for message in messages:
            if not isinstance(message, Message) or not isinstance(message.address, str):
                raise InvalidArgument("Only messages with a string address can be published.")
            if message.feed is not None and message.feed is not self:
                raise InvalidArgument("A message published to a feed is published to no other: publish a new Message.")
        core = self.core
        now = core.clock.seconds()
        delivered = 0
        for message in messages:
            # Message.feed is written once, here (a message published to
            # this feed before keeps it).
            if message.feed is None:
                message.feed = self
            delivered += self.route(message, now)
        core.stats["published"] += len(messages)
        return delivered

    @operation
    def stageContent(self, content):
        self._checkLive()
        return self.shelf.stage(content)

    @operation
    def claimContent(self, hash):
        self._checkLive()
        return self.shelf.claim(hash)

    @operation
    def listJoins(self):
        self._checkLive()
        return list(self._joins)

    @operation
    def listen(self, listener):
        self._checkLive()
        if self.type != "fanout":
            raise Forbidden("Only a fanout feed takes listeners.")
        if not callable(listener):
            raise InvalidArgument("A listener must be callable.")
        if self._fan is None:
            self._fan = Fan(self)
        handle = Listening(self._fan, listener)
        self._fan.listeners[handle] = None
        return handle


class Fan:
    """
    A fanout feed's listeners, and the messages routed to them by the
    operation under way (handed when it ends, like a pipe's).
    """

    __slots__ = ("feed", "listeners", "messages", "closing", "queued")

    def __init__(self, feed):
        self.feed = feed
        self.listeners: Dict[Listening, None] = {}
        self.messages = []
        self.closing = False
        self.queued = False

    def fire(self):
        messages, self.messages = self.messages, []
        listeners = self.listeners
        for message in messages:
            # Listening.stop() may run during the loop: it clears .listener.
            for handle in list(listeners):
                listener = handle.listener
                if listener is None:
                    continue
                try:
                    listener(message)
                except Exception:
                    log.failure("A feed listener failed", feed=self.feed.hash)
        if self.closing:
            handles = list(listeners)
            listeners.clear()
            for handle in handles:
                handle._end(True)


class Listening:
    """The handle of a feed's listener (see L{Feed.listen})."""

    __slots__ = ("_fan", "listener", "ended")

    def __init__(self, fan, listener):
        self._fan = fan
        self.listener = listener
        self.ended = Deferred()

    def _end(self, deleted: bool):
        self.listener = None
        if not self.ended.called:
            self.ended.callback(deleted)

    def stop(self):
        """Hand nothing more to the listener."""
        if self._fan.listeners.pop(self, MISSING) is not MISSING:
            self._end(False)
