"""
The backend worker pool of each vhost, built on the engine.

Events that browsers trigger are messages published to the vhost's private
I{rotator} feed, with the address C{channel/event} (or C{event} when the
trigger names no channel). Each connected worker is a I{stream} pipe in the
vhost's domain, joined to that feed with a predicate join (its filter as an
L{AddressMatches}: the whole address matches it), and delivered by
L{IPipe.consume}. The rotator
gives each event to exactly one matching join, round-robin, and keeps the
events that no join takes in its bounded backlog until a matching worker
joins.

When a worker goes, its join is deleted first (so nothing more is routed to
it), then every event its pipe still holds (routed to it, not yet written)
is published again to the rotator feed, for another worker or the backlog:
the same messages, since a message may be published again to its own feed.
"""

from __future__ import annotations

import secrets
from typing import Dict, List, Optional

from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks, succeed
from twisted.logger import Logger

from rocketd.engine.message import Content, Message
from rocketd.engine.predicates import AddressMatches
from rocketd.errors import InvalidArgument, NoSuchResource
from rocketd.http.pipestream import PipeStream
from rocketd.http.sse import encodeEvent
from rocketd.http.strictjson import encodeCompact
from rocketd.webrocket.tokens import anchoredPattern
from rocketd.webrocket.vhosts import DELETED, TOKEN_CHANGED, Vhost

#: The key of a triggered event's SSE frame in L{Message.cache}.
SSE_FRAME = ("webrocket", "sse-frame")
#: How often (seconds) a growing count of dropped backlog events is logged.
DROP_LOG_INTERVAL = 60.0


def eventAddress(channel: Optional[str], event: str) -> str:
    """The address (and SSE event name) of a triggered event: C{channel/event} or C{event}."""
    return f"{channel}/{event}" if channel else event


def triggeredEventMessage(
    eventId: int,
    channel: Optional[str],
    event: str,
    data: Optional[dict] = None,
    sid: Optional[str] = None,
    uid: Optional[str] = None,
) -> Message:
    """
    Build the message of a triggered event.

    Its content is the JSON object the worker receives: the event's data
    with C{"sid"} and C{"uid"} added (each only when given), on one line.

    @param eventId: the event's number (the SSE C{id:}), kept in the
        C{message_id} property.
    @raise InvalidArgument: empty event name, data that is not an object
        or not JSON-serialisable.
    """
    if not isinstance(event, str) or not event:
        raise InvalidArgument("The event name must be a non-empty string.")
    if channel is not None and (not isinstance(channel, str) or not channel):
        raise InvalidArgument("The channel name must be a non-empty string.")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument("The event data must be an object.")
    payload = dict(data)
    if sid is not None:
        payload["sid"] = sid
    if uid is not None:
        payload["uid"] = uid
    try:
        body = encodeCompact(payload)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"The event data can't be written as JSON: {e}.") from e
    return Message(
        address=eventAddress(channel, event),
        properties={"message_id": str(eventId), "type": "webrocket.event"},
        contents=(Content("application/json", body),),
    )


def formatTriggeredEvent(message: Message) -> bytes:
    """
    The SSE frame of a triggered event: C{id: N}, C{event: channel/event},
    C{data: {...}} (one line of JSON), encoded once and cached on the message.

    @param message: a message built by L{triggeredEventMessage}.
    """
    frame = message.cache.get(SSE_FRAME)
    if frame is None:
        body = message.contents[0].body.decode("utf-8") if message.contents else "{}"
        frame = encodeEvent(body, event=message.address, id=message.properties.get("message_id"))
        message.cache[SSE_FRAME] = frame
    return frame


def _heldEventFrame(held) -> bytes:
    """The SSE frame of a held triggered event (see L{formatTriggeredEvent})."""
    frame = held.message.cache.get(SSE_FRAME)
    return frame if frame is not None else formatTriggeredEvent(held.message)


def _settled(d: Deferred) -> Deferred:
    """
    @return: a Deferred firing with None once C{d} has fired, whatever
        with; C{d}'s result stays with C{d}'s own callbacks.
    """
    settled = Deferred()

    def fired(result):
        settled.callback(None)
        return result

    d.addBoth(fired)
    return settled


class Worker:
    """
    One connected backend worker: a stream pipe joined to the vhost's
    rotator feed, whose messages go to a sink.

    The sink is an L{rocketd.http.sse.SSEStream} or anything with its
    shape: C{send(bytes) -> bool} (False: not written, the stream is not
    open), C{paused} (the transport asked to stop: events wait in the
    pipe), C{whenWritable() -> Deferred[bool]} and C{close()}. The pipe's
    consumer is a L{PipeStream} gated by the sink.

    @ivar id: a random identifier, shown to administrators.
    @ivar filter: the filter expression's source.
    @ivar connected: POSIX time of connection.
    """

    log = Logger()

    def __init__(self, pool, vhost: Vhost, filterSource: str, predicate: AddressMatches, sink, connected: float):
        self.id = secrets.token_hex(8)
        self.vhost = vhost
        self.filter = filterSource
        self.connected = connected
        self._pool = pool
        self._predicate = predicate
        self._sink = sink
        self._pipe = None
        self._join = None
        self._consumer: Optional[PipeStream] = None
        self._attaching: Optional[Deferred] = None
        # None while serving; a list of waiters while cleaning up; then
        # the number of events put back.
        self._closing = None

    @property
    def sent(self) -> int:
        """How many events were written."""
        return 0 if self._consumer is None else self._consumer.written

    def describe(self) -> dict:
        """The administrator's view: C{{"id", "filter", "connected"}}."""
        return {"id": self.id, "filter": self.filter, "connected": self.connected}

    def _attach(self, domain, feed) -> Deferred:
        """
        Create the pipe, consume it, then join it (so that the backlog's
        matching events flow at once).

        @return: Deferred firing with this worker.
        """
        self._attaching = self._doAttach(domain, feed)
        return self._attaching

    @inlineCallbacks
    def _doAttach(self, domain, feed):
        self._pipe = yield domain.createPipe(type="stream", title=f"webrocket worker {self.id}")
        consumer = self._consumer = PipeStream(self._pipe, _heldEventFrame, self._sink.send, gate=self._sink)
        if self._closing is not None:
            # Disconnected while the pipe was being created.
            consumer.stop()
        yield consumer.start()
        self._join, _ = yield self._pipe.join(feed, address="*", predicate=self._predicate)
        return self

    def disconnect(self, requeue: bool = True) -> Deferred:
        """
        Detach the worker: delete its join, stop consuming, publish every
        event it still holds back to the rotator feed (unless C{requeue}
        is False: the vhost is going away), delete its pipe and close its
        sink. Calling it again waits for the same clean-up.

        @return: Deferred firing with the number of events put back.
        """
        if self._closing is None:
            self._closing = []
            if self._consumer is not None:
                # Nothing more goes to the sink: what the pipe holds is put back.
                self._consumer.stop()
            self._cleanUp(requeue).addCallback(self._cleanedUp)
        if isinstance(self._closing, int):
            return succeed(self._closing)
        d = Deferred()
        self._closing.append(d)
        return d

    def _cleanedUp(self, requeued):
        waiters, self._closing = self._closing, requeued
        for d in waiters:
            d.callback(requeued)

    @inlineCallbacks
    def _cleanUp(self, requeue):
        self._pool._forget(self)
        requeued = 0
        if self._attaching is not None:
            # Let a half-done attachment finish, so that nothing it creates
            # is left behind. Its outcome is its caller's (connect answers
            # with its failure): wait for it without taking it.
            yield _settled(self._attaching)
        try:
            if self._join is not None:
                yield self._join.delete()
            if self._consumer is not None:
                self._consumer.stop()
            if self._pipe is not None:
                held = yield self._pipe.listMessages()
                if held and requeue:
                    requeued = yield self._pool._requeue(self.vhost, [h.message for h in held])
                yield self._pipe.delete()
        except NoSuchResource:
            # The vhost's domain went first: nothing to put back.
            pass
        except Exception:
            self.log.failure("cleaning up worker {worker} of {vhost} failed", worker=self.id, vhost=self.vhost.path)
        self._sink.close()
        self.log.debug(
            "worker {worker} of {vhost} left: {sent} events sent, {requeued} put back",
            worker=self.id,
            vhost=self.vhost.path,
            sent=self.sent,
            requeued=requeued,
        )
        return requeued


class WorkerPool:
    """
    The worker pools of every vhost, and the triggering of events.

    @param engine: the L{rocketd.interfaces.IEngine}.
    @param vhosts: the L{rocketd.webrocket.vhosts.VhostRegistry}; the pool
        closes a vhost's workers when it is deleted or re-tokened.
    @param clock: an L{IReactorTime}.
    @param backlog: how many events may wait for a worker, per vhost.
    @param backlogAge: how many seconds an event may wait for a worker.
    """

    log = Logger()

    def __init__(self, engine, vhosts, clock, backlog: int = 1000, backlogAge: float = 300.0):
        self._engine = engine
        self._vhosts = vhosts
        self._clock = clock
        self._backlog = backlog
        self._backlogAge = backlogAge
        self._feeds: Dict[str, object] = {}
        self._creating: Dict[str, List[Deferred]] = {}
        self._counters: Dict[str, int] = {}
        self._workers: Dict[str, Dict[str, Worker]] = {}
        self._dropped: Dict[str, int] = {}
        self._dropLogged: Dict[str, float] = {}
        vhosts.addObserver(self._vhostChanged)

    # -- the rotator feed ----------------------------------------------------

    def eventFeed(self, vhost) -> Deferred:
        """
        The vhost's private rotator feed of triggered events, created on
        first use.

        @return: Deferred firing with the L{IFeed}; fails with
            L{NoSuchResource} for an unknown vhost.
        """
        try:
            vhost = self._vhosts.resolve(vhost)
        except NoSuchResource:
            return fail()
        key = vhost.path
        if key in self._feeds:
            return succeed(self._feeds[key])
        waiter = Deferred()
        if key in self._creating:
            self._creating[key].append(waiter)
            return waiter
        self._creating[key] = [waiter]
        d = self._engine.getDomain(vhost.domain)
        d.addCallback(
            lambda domain: domain.createFeed(
                None,
                "rotator",
                title=f"WebRocket events of {vhost.path}",
                backlog=self._backlog,
                backlogAge=self._backlogAge,
            )
        )

        def created(result):
            feed, _ = result
            self._feeds[key] = feed
            for w in self._creating.pop(key):
                w.callback(feed)

        def failed(failure):
            for w in self._creating.pop(key):
                w.errback(failure)

        d.addCallbacks(created, failed)
        return waiter

    # -- triggering ------------------------------------------------------

    def trigger(self, vhost, channel: Optional[str], event: str, data: Optional[dict], sid=None, uid=None) -> Deferred:
        """
        Send an event to the vhost's workers: exactly one matching worker
        receives it, or it waits in the backlog.

        @param vhost: a L{Vhost} or a vhost path.
        @param channel: the channel name, or None.
        @param event: the event name.
        @param data: the event's data (an object), or None.
        @param sid: the triggering connection's session id.
        @param uid: the authenticated user's id, if any.
        @return: Deferred firing with the event's id (int); fails with
            L{InvalidArgument} or L{NoSuchResource}.
        """
        try:
            vhost = self._vhosts.resolve(vhost)
            eventId = self._counters.get(vhost.path, 0) + 1
            message = triggeredEventMessage(eventId, channel, event, data, sid=sid, uid=uid)
        except Exception:
            return fail()
        self._counters[vhost.path] = eventId
        d = self.eventFeed(vhost)
        d.addCallback(lambda feed: feed.publish([message]).addCallback(lambda _: self._checkDropped(vhost, feed)))
        d.addCallback(lambda _: eventId)
        return d

    def _requeue(self, vhost: Vhost, messages: List[Message]) -> Deferred:
        """Publish events a worker did not write back to the rotator feed; fires with their count."""
        feed = self._feeds.get(vhost.path)
        if feed is None:
            return succeed(0)
        d = feed.publish(messages)
        d.addCallback(lambda _: self._checkDropped(vhost, feed))
        d.addCallback(lambda _: len(messages))
        return d

    def _checkDropped(self, vhost: Vhost, feed) -> None:
        dropped = getattr(feed, "dropped", 0) or 0
        before = self._dropped.get(vhost.path, 0)
        if dropped <= before:
            return
        now = self._clock.seconds()
        last = self._dropLogged.get(vhost.path)
        if last is None or now - last >= DROP_LOG_INTERVAL:
            self.log.warn(
                "{vhost}: {dropped} events dropped from the worker backlog so far (no matching worker)",
                vhost=vhost.path,
                dropped=dropped,
            )
            self._dropLogged[vhost.path] = now
            self._dropped[vhost.path] = dropped

    def dropped(self, vhost) -> int:
        """How many events of this vhost fell out of the backlog (0 before its first event)."""
        feed = self._feeds.get(self._vhosts.resolve(vhost).path)
        return getattr(feed, "dropped", 0) if feed is not None else 0

    # -- workers --------------------------------------------------------

    def connect(self, vhost, filterSource: str, sink) -> Deferred:
        """
        Add a worker to a vhost's pool.

        @param filterSource: the filter expression, matched (anchored)
            against C{channel/event}.
        @param sink: where the worker's frames go (see L{Worker}).
        @return: Deferred firing with the L{Worker}, once it is joined (the
            backlog's matching events may already have been sent); fails
            with L{InvalidArgument} for a bad filter, L{NoSuchResource} for
            an unknown vhost.
        """
        try:
            vhost = self._vhosts.resolve(vhost)
            # The face's sentence for a bad filter (400), then the engine's value.
            anchoredPattern(filterSource, "filter")
            predicate = AddressMatches(filterSource)
        except Exception:
            return fail()
        worker = Worker(self, vhost, filterSource, predicate, sink, self._clock.seconds())
        self._workers.setdefault(vhost.path, {})[worker.id] = worker

        @inlineCallbacks
        def attach():
            feed = yield self.eventFeed(vhost)
            domain = yield self._engine.getDomain(vhost.domain)
            yield worker._attach(domain, feed)
            return worker

        d = attach()

        def failed(failure):
            worker.disconnect(requeue=True)
            return failure

        d.addErrback(failed)
        return d

    def _forget(self, worker: Worker) -> None:
        workers = self._workers.get(worker.vhost.path, {})
        workers.pop(worker.id, None)
        if not workers:
            self._workers.pop(worker.vhost.path, None)

    def listWorkers(self, vhost) -> List[dict]:
        """
        @param vhost: a L{Vhost} or a vhost path.
        @return: the vhost's connected workers, oldest first, as
            C{{"id": str, "filter": str, "connected": float}}.
        """
        path = vhost.path if isinstance(vhost, Vhost) else vhost
        workers = sorted(self._workers.get(path, {}).values(), key=lambda w: (w.connected, w.id))
        return [w.describe() for w in workers]

    def disconnectAll(self, vhost, requeue: bool = True) -> Deferred:
        """
        Disconnect every worker of a vhost.

        @return: Deferred firing with None once they are all cleaned up.
        """
        path = vhost.path if isinstance(vhost, Vhost) else vhost
        workers = list(self._workers.get(path, {}).values())
        d = gatherResults([w.disconnect(requeue=requeue) for w in workers])
        d.addCallback(lambda _: None)
        return d

    def _vhostChanged(self, event: str, vhost: Vhost) -> None:
        if event == DELETED:
            self.disconnectAll(vhost, requeue=False)
            self._feeds.pop(vhost.path, None)
            self._counters.pop(vhost.path, None)
            self._dropped.pop(vhost.path, None)
            self._dropLogged.pop(vhost.path, None)
        elif event == TOKEN_CHANGED:
            # Workers authenticated with the old token lose their stream.
            self.disconnectAll(vhost, requeue=True)
