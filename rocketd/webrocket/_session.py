"""
One browser connection's protocol, apart from the WebSocket library: what
each client event does, in order, to the engine and to the connection.

A L{Session} reads client frames (L{Session.received}) and writes server
frames through its I{link}: anything with C{send(frameBytes)} and
C{close(code, reason)} (a L{Link} of the WebSocket protocol in
L{rocketd.webrocket.frontend}, or a test double). It tells its frontend
when it subscribes, unsubscribes and goes (L{Frontend.subscribed},
L{Frontend.unsubscribed}, L{Frontend.disconnected}). The frames of one
session are handled one at a time, in arrival order, so that the answers
come in the order of the requests whatever the engine's latency.

What the backend fires, what browsers broadcast and the presence events
all travel as messages of the channel's fanout feed. Each subscription is
a sink of the process's channel fan-out (L{rocketd.webrocket._fanout}):
one engine listener per channel feed, the frame cached on the message,
and the frames of one reactor turn written to every subscriber as one
bytes object. A hidden subscriber takes every message but broadcasts.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Callable, Dict, NamedTuple, Optional

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from rocketd.errors import InvalidArgument, NoSuchResource
from rocketd.webrocket._fanout import ISink
from rocketd.webrocket._presence import Member
from rocketd.webrocket._wire import (
    BAD_REQUEST,
    BROADCAST,
    CHANNEL_NOT_FOUND,
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_CHANNEL_NAME,
    NOT_SUBSCRIBED,
    PRESENCE,
    UNAUTHORIZED,
    FrontendError,
    channelMessage,
    errorFrame,
    parseClientFrame,
    serverFrame,
)

#: The WebSocket close code of a normal close.
CLOSE_NORMAL = 1000
#: The close code of a connection closed for breaking a limit.
CLOSE_POLICY_VIOLATION = 1008
#: How many client frames may wait for the one being handled.
MAX_PENDING = 256

class Link(NamedTuple):
    """
    A session's connection: C{send(frames)} writes server frames as they
    are (bytes), C{close(code, reason)} starts closing it.
    """

    send: Callable[[bytes], object]
    close: Callable[[int, str], object]


#: Channel kinds, by name prefix.
PUBLIC, PRIVATE, PRESENCE_CHANNEL = "public", "private", "presence"


def channelKind(name: str) -> str:
    """@return: L{PRESENCE_CHANNEL} (C{presence-*}), L{PRIVATE} (C{private-*}) or L{PUBLIC}."""
    if name.startswith("presence-"):
        return PRESENCE_CHANNEL
    if name.startswith("private-"):
        return PRIVATE
    return PUBLIC


def _nonEmptyString(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise FrontendError(BAD_REQUEST)
    return value


def _data(body: dict) -> Optional[dict]:
    """@return: the body's C{data} object, or None if absent; 400 if not an object."""
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise FrontendError(BAD_REQUEST)
    return data


@implementer(ISink)
class Subscription:
    """
    One channel subscription: a sink of the channel's fan-out.

    Until L{start}, what arrives waits here (at most the connection's send
    queue limit), so that the C{:subscribed} answer goes out first.

    @ivar channel: the channel name.
    @ivar data: what the subscriber subscribed with.
    @ivar hidden: whether it takes no broadcasts and is not announced.
    @ivar feed: the channel's L{IFeed}.
    """

    __slots__ = ("session", "channel", "data", "hidden", "feed", "_fans", "_early", "_ready", "_gone")

    def __init__(self, session: "Session", channel: str, data: dict, hidden: bool):
        self.session = session
        self.channel = channel
        self.data = data
        self.hidden = hidden
        self.feed = None
        self._fans = None
        self._early = None
        self._ready = False
        self._gone = False

    @property
    def key(self):
        return (self.session.vhost.path, self.channel)

    def attach(self, fans, feed) -> Deferred:
        """
        Take what C{feed} hands out, through C{fans}.

        @return: Deferred firing with None; fails as the engine does (with
            L{NoSuchResource} if the feed went meanwhile).
        """
        self._fans = fans
        self.feed = feed
        return fans.add(feed, self)

    def start(self) -> None:
        """Deliver from now on (what waited first)."""
        self._ready = True
        early, self._early = self._early, None
        if early:
            self.write(b"".join(early))

    def write(self, data: bytes) -> None:
        """The frames of one turn (this runs once per subscriber per turn)."""
        session = self.session
        if self._gone or session.closed:
            return
        if self._ready:
            session.transmit(data)
            return
        early = self._early
        if early is None:
            early = self._early = []
        early.append(data)
        if sum(map(len, early)) > session.frontend.sendQueue:
            self._early = None
            session.overflowed()

    def feedGone(self) -> None:
        """The channel's feed was deleted (closed by the backend, or through RestMS)."""
        if not self._gone:
            self.session.channelClosed(self)

    def detach(self) -> Deferred:
        """
        Stop delivering.

        @return: Deferred firing with None.
        """
        self._gone = True
        self._early = None
        if self._fans is not None:
            self._fans.remove(self.feed, self)
        return succeed(None)


class Session:
    """
    One browser connection on a vhost.

    @param frontend: the L{rocketd.webrocket.frontend.Frontend}.
    @param vhost: the L{rocketd.webrocket.vhosts.Vhost} connected to.
    @param link: the connection: C{send(bytes)}, C{close(code, reason)}.

    @ivar sid: the session id (a UUID4).
    @ivar grant: the L{rocketd.webrocket.tokens.Grant} of the token the
        client authenticated with, or None.
    @ivar subscriptions: channel name to L{Subscription}.
    @ivar closed: whether the connection is gone.
    @ivar transmit: the link's C{send}, taken once: writes frames as they
        are (the fan-out's path; L{send} checks that the session is open).
    """

    log = Logger()

    def __init__(self, frontend, vhost, link, sid: Optional[str] = None):
        self.frontend = frontend
        self.vhost = vhost
        self.sid = sid if sid is not None else str(uuid.uuid4())
        self.grant = None
        self.subscriptions: Dict[str, Subscription] = {}
        self.closed = False
        self._link = link
        self.transmit = link.send
        self._pending = deque()
        self._busy = False
        self._pumping = False
        self._cleaned = None

    @property
    def uid(self) -> Optional[str]:
        return self.grant.uid if self.grant is not None else None

    def send(self, frame: bytes) -> None:
        """Write a server frame (nothing once the connection is gone)."""
        if not self.closed:
            self.transmit(frame)

    def open(self) -> None:
        """Greet the client: C{{":connected": {"sid": ...}}}."""
        self.send(serverFrame(":connected", {"sid": self.sid}))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Ask the link to close the connection (L{lost} follows)."""
        if not self.closed:
            self._link.close(code, reason)

    # -- the command queue ------------------------------------------------

    def received(self, payload, isBinary: bool = False) -> None:
        """Handle a client frame once those before it are done."""
        if self.closed:
            return
        if len(self._pending) >= MAX_PENDING:
            self.log.info("{sid}: too many requests waiting; closing", sid=self.sid)
            self.close(CLOSE_POLICY_VIOLATION, "Too many requests waiting.")
            return
        self._pending.append(lambda: self._command(payload, isBinary))
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._pending and not self._busy:
                step = self._pending.popleft()
                self._busy = True
                maybeDeferred(step).addErrback(self._stepFailed).addBoth(self._stepDone)
        finally:
            self._pumping = False

    def _stepFailed(self, failure):
        self.log.failure("{sid}: a request failed", failure, sid=self.sid)

    def _stepDone(self, _):
        self._busy = False
        self._pump()

    def _command(self, payload, isBinary) -> Optional[Deferred]:
        d = maybeDeferred(self._dispatch, payload, isBinary)
        d.addErrback(self._answerError)
        return d

    def _dispatch(self, payload, isBinary):
        name, body = parseClientFrame(payload, isBinary)
        return getattr(self, "_on_" + name)(body)

    def _answerError(self, failure):
        if failure.check(FrontendError):
            self.send(errorFrame(failure.value.code))
            return
        self.log.failure("{sid}: a request failed", failure, sid=self.sid)
        self.send(errorFrame(INTERNAL_ERROR))

    # -- the end --------------------------------------------------------------

    def lost(self) -> Deferred:
        """
        The connection is gone: drop the frames not handled yet, then (after
        the one being handled) every subscription, announcing the member's
        departure in presence channels.

        @return: Deferred firing when cleaned up.
        """
        if self._cleaned is None:
            self.closed = True
            self._pending.clear()
            self._cleaned = Deferred()
            done = self._cleaned

            def cleanUp():
                d = self._dropAll()
                d.addBoth(lambda _: self.frontend.disconnected(self))
                d.addBoth(lambda _: done.callback(None))
                return d

            self._pending.append(cleanUp)
            self._pump()
        d = Deferred()
        self._cleaned.addBoth(lambda result: d.callback(None) or result)
        return d

    @inlineCallbacks
    def _dropAll(self):
        for subscription in list(self.subscriptions.values()):
            yield self._drop(subscription, None)

    @inlineCallbacks
    def _drop(self, subscription: Subscription, data: Optional[dict]):
        """Unsubscribe: forget, delete the pipe, announce the departure."""
        frontend = self.frontend
        self.subscriptions.pop(subscription.channel, None)
        frontend.unsubscribed(subscription)
        member = None
        if channelKind(subscription.channel) == PRESENCE_CHANNEL:
            member = frontend.presence.remove(subscription.key, self.sid)
        yield subscription.detach()
        if member is not None and not member.hidden:
            body = {**(member.data if data is None else data), "channel": subscription.channel, "uid": member.uid}
            yield frontend.publish(subscription.feed, channelMessage(":memberLeft", body, PRESENCE))

    # -- client events ----------------------------------------------------------

    def _on_auth(self, body):
        token = _nonEmptyString(body, "token")
        d = succeed(None)
        if self.grant is not None:
            # Re-authentication drops the old identity and its subscriptions.
            self.grant = None
            d = self._dropAll()

        def check(_):
            grant = self.frontend.tokens.consume(token, self.vhost.path)
            if grant is None:
                raise FrontendError(UNAUTHORIZED)
            self.grant = grant
            self.send(serverFrame(":authenticated", {}))

        return d.addCallback(check)

    def _on_subscribe(self, body):
        channel = _nonEmptyString(body, "channel")
        data = _data(body) or {}
        hidden = body.get("hidden", False)
        if not isinstance(hidden, bool):
            raise FrontendError(BAD_REQUEST)
        if not self.frontend.validChannelName(channel):
            raise FrontendError(CHANNEL_NOT_FOUND)
        existing = self.subscriptions.get(channel)
        if existing is not None:
            # Subscribing twice changes nothing; the answer is the same.
            self.send(self._subscribed(existing, self.frontend.presence.visible(existing.key, self.sid)))
            return None
        return self._subscribe(channel, data, hidden)

    def _subscribed(self, subscription: Subscription, subscribers) -> bytes:
        answer = {"channel": subscription.channel}
        kind = channelKind(subscription.channel)
        if kind != PUBLIC:
            answer["uid"] = self.uid
        if kind == PRESENCE_CHANNEL:
            answer["subscribers"] = subscribers
        return serverFrame(":subscribed", answer)

    @inlineCallbacks
    def _subscribe(self, channel, data, hidden):
        frontend = self.frontend
        feed = yield frontend.channelFeed(self.vhost, channel)
        kind = channelKind(channel)
        if kind != PUBLIC and (self.grant is None or not self.grant.allows(channel)):
            raise FrontendError(FORBIDDEN)
        subscription = Subscription(self, channel, data, hidden)
        try:
            yield subscription.attach(frontend.fans, feed)
        except NoSuchResource:
            yield subscription.detach()
            raise FrontendError(CHANNEL_NOT_FOUND)
        except Exception as e:
            yield subscription.detach()
            raise e
        if self.closed:
            yield subscription.detach()
            return
        self.subscriptions[channel] = subscription
        frontend.subscribed(subscription)
        subscribers = None
        if kind == PRESENCE_CHANNEL:
            subscribers = frontend.presence.add(subscription.key, Member(self.sid, self.uid, data, hidden))
        self.send(self._subscribed(subscription, subscribers))
        if kind == PRESENCE_CHANNEL and not hidden:
            joined = channelMessage(":memberJoined", {**data, "channel": channel, "uid": self.uid}, PRESENCE)
            yield frontend.publish(feed, joined)
        subscription.start()

    def _on_unsubscribe(self, body):
        channel = _nonEmptyString(body, "channel")
        data = _data(body)
        subscription = self._subscription(channel)
        if isinstance(subscription, Deferred):
            return subscription
        d = self._drop(subscription, data)
        d.addCallback(lambda _: self.send(serverFrame(":unsubscribed", {"channel": channel})))
        return d

    def _subscription(self, channel):
        """
        @return: the L{Subscription} to C{channel}; or a Deferred that fails
            with 454 (no such channel) or 453 (not subscribed).
        """
        frontend = self.frontend
        if not frontend.validChannelName(channel):
            raise FrontendError(CHANNEL_NOT_FOUND)
        subscription = self.subscriptions.get(channel)
        if subscription is not None:
            return subscription

        def notSubscribed(_):
            raise FrontendError(NOT_SUBSCRIBED)

        return frontend.channelFeed(self.vhost, channel).addCallback(notSubscribed)

    def _on_broadcast(self, body):
        channel = _nonEmptyString(body, "channel")
        event = _nonEmptyString(body, "event")
        if event.startswith(":"):
            raise FrontendError(BAD_REQUEST)
        data = _data(body) or {}
        trigger = body.get("trigger")
        if trigger is not None and (not isinstance(trigger, str) or not trigger):
            raise FrontendError(BAD_REQUEST)
        subscription = self._subscription(channel)
        if isinstance(subscription, Deferred):
            return subscription
        if trigger is not None and self.grant is None:
            raise FrontendError(FORBIDDEN)
        try:
            message = channelMessage(event, {**data, "sid": self.sid, "channel": channel}, BROADCAST)
        except (TypeError, ValueError):
            raise FrontendError(BAD_REQUEST)
        d = subscription.feed.publish([message])
        d.addErrback(self._channelGone)
        if trigger is not None:
            d.addCallback(lambda _: self._trigger(channel, trigger, data))
        return d

    @staticmethod
    def _channelGone(failure):
        """The channel's feed went (deleted behind the backend's back): 454."""
        failure.trap(NoSuchResource)
        raise FrontendError(CHANNEL_NOT_FOUND)

    def _on_trigger(self, body):
        event = _nonEmptyString(body, "event")
        data = _data(body) or {}
        channel = body.get("channel")
        if channel is not None:
            if not isinstance(channel, str) or not channel:
                raise FrontendError(BAD_REQUEST)
            if not self.frontend.validChannelName(channel):
                raise FrontendError(INVALID_CHANNEL_NAME)
        if self.grant is None:
            raise FrontendError(FORBIDDEN)
        return self._trigger(channel, event, data)

    def _trigger(self, channel, event, data) -> Deferred:
        d = self.frontend.workers.trigger(self.vhost, channel, event, data, sid=self.sid, uid=self.uid)
        d.addCallbacks(lambda _: None, self._badTrigger)
        return d

    @staticmethod
    def _badTrigger(failure):
        """The workers refuse the event (data that can't be JSON...): 400."""
        failure.trap(InvalidArgument)
        raise FrontendError(BAD_REQUEST)

    def _on_close(self, body):
        self.close(CLOSE_NORMAL, "Closed at the client's request.")

    # -- told by the frontend -------------------------------------------------

    def channelClosed(self, subscription: Subscription) -> Deferred:
        """
        A subscribed channel was closed: tell the client, drop the
        subscription (once, however many times it is told).
        """
        if self.subscriptions.get(subscription.channel) is not subscription:
            return succeed(None)
        del self.subscriptions[subscription.channel]
        frontend = self.frontend
        frontend.unsubscribed(subscription)
        frontend.presence.remove(subscription.key, self.sid)
        self.send(serverFrame(":channelClosed", {"channel": subscription.channel}))
        return subscription.detach()

    def overflowed(self) -> None:
        """More waits for this client than its send queue may hold: close it (1008)."""
        if not self.closed:
            self.frontend.overflowed(self)
            self.close(CLOSE_POLICY_VIOLATION, "The client does not read fast enough.")

