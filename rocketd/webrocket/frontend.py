"""
The WebRocket frontend: browsers' WebSockets at C{ws://host:port/:vhost},
on the main listener next to the HTTP APIs.

L{Frontend} holds the connections of every vhost and what they share
(which subscription belongs to which channel, the presence channels'
members); L{FrontendProtocol} is the WebSocket protocol of one connection
(opening handshake, bounded send queue, pings), which hands every frame to
its L{rocketd.webrocket._session.Session}, where the protocol's events are
handled. L{Frontend.resource} is the twisted.web resource that takes a
request's connection over; the backend API hands it the upgrade requests
made to a bare vhost path.

The parts it uses are given to it (L{rocketd.app} wires them): the
channels, the browser tokens, the worker pool. What it offers the others
is public: L{Frontend.channelClosed} (to observe the channels),
L{Frontend.browsersOn} (to count a channel's subscribers),
L{Frontend.slowClientsClosed} (for the admin API); and to its sessions,
L{Frontend.subscribed}, L{Frontend.unsubscribed} and
L{Frontend.disconnected}.

Flow control: each connection writes through an L{Outbox} of at most
C{sendQueue} bytes; a client that reads too slowly to keep it from
overflowing is disconnected with close code 1008 and counted in
L{Frontend.overflows}. Idle connections are pinged every C{pingInterval}
seconds (proxies close silent connections); one that does not answer
within the same time is dropped.

Presence state is per process (see L{rocketd.webrocket._presence}).
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from rocketd.droplog import DropWarnings
from rocketd.errors import EngineError, InvalidName, NoSuchResource
from rocketd.http.coalesce import Coalescer
from rocketd.http.directwrite import directWriter
from rocketd.webrocket._fanout import ChannelFans
from rocketd.webrocket.origins import OriginPolicy
from rocketd.webrocket._outbox import Outbox
from rocketd.webrocket._presence import ChannelKey, Presence
from rocketd.webrocket._session import CLOSE_POLICY_VIOLATION, Link, Session, Subscription
from rocketd.webrocket._static import staticResource
from rocketd.webrocket._wire import CHANNEL_NOT_FOUND, FrontendError
from rocketd.webrocket.channels import checkChannelName
from rocketd.webrocket.vhosts import DELETED

__all__ = ["Frontend", "FrontendFactory", "FrontendProtocol", "ClockTimer", "staticResource"]

#: The close code sent to the connections of a deleted vhost.
CLOSE_GOING_AWAY = 1001
#: How long a client whose send queue overflowed has to read what was
#: written and the close frame, in seconds, before its connection is cut.
OVERFLOW_CLOSE_TIMEOUT = 5.0


class ClockTimer:
    """
    The WebSocket library's timer interface (C{call_later}) on an
    injected clock, so that handshake timeouts, pings and close timeouts
    run on the daemon's reactor, or a test's L{Clock}.
    """

    def __init__(self, clock):
        self._clock = clock

    def call_later(self, delay, func, *args, **kwargs):
        return _Call(self._clock.callLater(delay, func, *args, **kwargs))


def autobahnTakesTimer(factoryClass=WebSocketServerFactory) -> bool:
    """
    Check that a WebSocket factory keeps the timer its protocols schedule
    with (handshake, ping and close timeouts) in C{_batched_timer}, a
    private attribute of autobahn's, which L{FrontendFactory} replaces
    with a L{ClockTimer}.

    @param factoryClass: the factory class to check (autobahn's by default).
    @return: whether it does.
    """
    try:
        factory = factoryClass(reactor=object())
    except Exception:
        return False
    return callable(getattr(getattr(factory, "_batched_timer", None), "call_later", None))


#: Whether this autobahn takes an injected timer (L{autobahnTakesTimer});
#: checked once, at import. If not, its timers run on its own (txaio's,
#: the global reactor's: the daemon's reactor, but not a test's clock).
AUTOBAHN_TIMER = autobahnTakesTimer()


class _Call:
    """A delayed call whose C{cancel} may be called after it ran."""

    __slots__ = ("_call",)

    def __init__(self, call):
        self._call = call

    def cancel(self):
        if self._call.active():
            self._call.cancel()


class Frontend:
    """
    Every browser connection of the daemon.

    @param vhosts: the L{rocketd.webrocket.vhosts.VhostRegistry}.
    @param channels: the L{rocketd.webrocket.channels.Channels}.
    @param tokens: the L{rocketd.webrocket.tokens.TokenStore} the browsers'
        tokens are consumed from.
    @param workers: the L{rocketd.webrocket.workers.WorkerPool} browsers
        trigger events to.
    @param clock: the reactor: time, and the WebSocket timers.
    @param sendQueue: the most bytes waiting for one slow connection.
    @param allowedOrigins: the origins whose pages may connect (see
        L{rocketd.webrocket.origins}).
    @param pingInterval: seconds between pings of an idle connection (and
        how long its pong may take); 0 disables pings.
    @param maxMessage: the largest client message accepted, in bytes.
    @param coalescer: the L{Coalescer} of C{clock} that writes a turn's
        channel frames at its end (shared with the other streams of the
        clock); by default one of this frontend's own.

    @ivar presence: the L{Presence} of the presence channels.
    @ivar fans: the L{ChannelFans}: what channels hand out, to subscribers.
    @ivar overflows: how many connections were closed for overflowing
        their send queue (L{slowClientsClosed} counts them per vhost; a
        warning says so at most once a minute per vhost).
    @ivar connections: how many connections are open.
    """

    log = Logger()

    def __init__(
        self,
        vhosts,
        channels,
        tokens,
        workers,
        clock,
        sendQueue: int = 1048576,
        allowedOrigins: Iterable[str] = ("*",),
        pingInterval: float = 30.0,
        maxMessage: int = 1048576,
        coalescer: Optional[Coalescer] = None,
    ):
        self.vhosts = vhosts
        self.channels = channels
        self.tokens = tokens
        self.workers = workers
        self.clock = clock
        self.sendQueue = sendQueue
        self.origins = OriginPolicy(allowedOrigins)
        self.pingInterval = pingInterval
        self.maxMessage = maxMessage
        self.presence = Presence()
        self.fans = ChannelFans(coalescer if coalescer is not None else Coalescer(clock))
        self.overflows = 0
        self._overflowsByVhost: Dict[str, int] = {}
        self._overflowWarnings = DropWarnings(
            self.log,
            clock,
            "WebSocket clients of {vhost} closed because they read too slowly (their send queue was full): "
            "{count} since the last warning, {closed} since the daemon started",
        )
        self._sessions: Dict[str, Session] = {}
        self._subscribers: Dict[ChannelKey, Dict[str, Subscription]] = {}
        vhosts.addObserver(self._vhostChanged)

    @property
    def connections(self) -> int:
        return len(self._sessions)

    def sessions(self, vhost: Optional[str] = None):
        """@return: the open sessions (of one vhost path, if given)."""
        return [s for s in self._sessions.values() if vhost is None or s.vhost.path == vhost]

    # -- the WebSocket side ---------------------------------------------------

    def factory(self) -> "FrontendFactory":
        """@return: a WebSocket server factory of L{FrontendProtocol}s."""
        return FrontendFactory(self)

    def resource(self) -> WebSocketResource:
        """@return: the resource that turns a request into a WebSocket connection."""
        return WebSocketResource(self.factory())

    def vhostFor(self, path: str):
        """@return: the L{Vhost} whose path is C{path} (one trailing slash allowed), or None."""
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        return self.vhosts.get(path)

    def connect(self, vhost, link) -> Session:
        """
        A connection opened on a vhost: make its session and greet it.

        @param link: the connection (C{send(bytes)}, C{close(code, reason)}).
        @return: the L{Session}.
        """
        session = Session(self, vhost, link)
        self._sessions[session.sid] = session
        self.log.debug("{sid} connected to {vhost}", sid=session.sid, vhost=vhost.path)
        session.open()
        return session

    def overflowed(self, session: Session) -> None:
        """A session's send queue overflowed: count it (the protocol closes it)."""
        self.overflows += 1
        path = session.vhost.path
        closed = self._overflowsByVhost[path] = self._overflowsByVhost.get(path, 0) + 1
        self.log.info(
            "{sid} on {vhost} read too slowly and was disconnected ({overflows} so far)",
            sid=session.sid,
            vhost=path,
            overflows=self.overflows,
        )
        self._overflowWarnings.count(path, 1, vhost=path, closed=closed)

    def slowClientsClosed(self, vhost: str) -> int:
        """@return: how many clients of the vhost (a path) were closed because their send queue was full."""
        return self._overflowsByVhost.get(vhost, 0)

    def browsersOn(self, feed) -> int:
        """
        @return: how many browsers of this process a channel's feed has (they
            share one engine listener, so they are not among its joins).
        """
        return self.fans.sinks(feed)

    # -- what sessions tell the frontend -------------------------------------------

    def disconnected(self, session: Session) -> None:
        """A session's connection is gone and its subscriptions dropped: forget it."""
        self._sessions.pop(session.sid, None)
        self.log.debug("{sid} disconnected from {vhost}", sid=session.sid, vhost=session.vhost.path)

    # -- channels ---------------------------------------------------------------

    @staticmethod
    def validChannelName(name: str) -> bool:
        try:
            checkChannelName(name)
        except InvalidName:
            return False
        return True

    def channelFeed(self, vhost, name: str) -> Deferred:
        """
        @return: Deferred firing with the channel's fanout feed; fails with
            L{FrontendError} 454 when there is no such channel.
        """
        return self.channels.feed(vhost, name).addErrback(_noChannel)

    def publish(self, feed, message) -> Deferred:
        """
        Publish a frontend message (presence) to a channel's feed; a feed
        that went meanwhile is not an error.

        @return: Deferred firing with None.
        """
        if feed is None:
            return succeed(None)
        d = feed.publish([message])
        d.addErrback(lambda f: f.trap(EngineError))
        d.addCallback(lambda _: None)
        return d

    def subscribers(self, vhost: str, channel: str):
        """@return: the sessions subscribed to a channel (by this process)."""
        return [s.session for s in self._subscribers.get((vhost, channel), {}).values()]

    def subscribed(self, subscription: Subscription) -> None:
        """A session subscribed to a channel: count it among the channel's subscribers."""
        self._subscribers.setdefault(subscription.key, {})[subscription.session.sid] = subscription

    def unsubscribed(self, subscription: Subscription) -> None:
        """A session's subscription is over (however it ended): forget it."""
        key = subscription.key
        subscribers = self._subscribers.get(key)
        if subscribers is not None and subscribers.get(subscription.session.sid) is subscription:
            del subscribers[subscription.session.sid]
            if not subscribers:
                del self._subscribers[key]

    def channelClosed(self, vhost, name: str) -> None:
        """
        A channel was closed (observes L{rocketd.webrocket.channels.Channels}):
        tell its subscribers, drop their subscriptions.
        """
        key = (vhost.path, name)
        subscriptions = self._subscribers.pop(key, {})
        self.presence.forget(key)
        for subscription in subscriptions.values():
            # What the channel handed out before it closed goes first.
            self.fans.flush(subscription.feed)
            subscription.session.channelClosed(subscription)
        if subscriptions:
            self.log.debug("{channel} of {vhost} closed: {count} subscribers told", channel=name,
                           vhost=vhost.path, count=len(subscriptions))

    def _vhostChanged(self, event: str, vhost) -> None:
        if event != DELETED:
            return
        self._overflowsByVhost.pop(vhost.path, None)
        for session in self.sessions(vhost.path):
            session.close(CLOSE_GOING_AWAY, "The vhost was deleted.")
        self.presence.forgetVhost(vhost.path)


def _noChannel(failure):
    failure.trap(NoSuchResource)
    raise FrontendError(CHANNEL_NOT_FOUND)


class FrontendProtocol(WebSocketServerProtocol):
    """
    One browser's WebSocket: the opening handshake's checks (vhost,
    origin), then every message to its L{Session}, every server frame
    through its L{Outbox}.

    @ivar session: the L{Session}, once open.
    """

    session: Optional[Session] = None
    outbox: Optional[Outbox] = None
    _vhost = None

    # -- opening -------------------------------------------------------------

    def onConnect(self, request):
        frontend = self.factory.frontend
        vhost = frontend.vhostFor(request.path)
        if vhost is None:
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND, "There is no vhost at this path.")
        if not frontend.origins.allows(request.origin):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "This origin may not connect.")
        self._vhost = vhost
        return None

    def onOpen(self):
        frontend = self.factory.frontend
        transport = self.transport
        # The fan-out's hot path: a turn's frames go from the channel's
        # fan-out into the outbox and from there to the socket, sent at
        # once when nothing waits before them (rocketd.http.directwrite).
        self.outbox = Outbox(directWriter(transport), frontend.sendQueue, self._overflowed)
        try:
            transport.registerProducer(self.outbox, True)
        except RuntimeError:
            # The web server's channel was the producer of this connection.
            transport.unregisterProducer()
            transport.registerProducer(self.outbox, True)
        self._producing = True
        # The session writes frames straight into the outbox.
        self.session = frontend.connect(self._vhost, Link(self.outbox.send, self.close))

    _producing = False

    def unregisterProducer(self):
        """
        Called as the connection is dropped: unregister the outbox if it
        is the transport's producer (before the handshake, it is not).
        """
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()

    # -- how a session closes the connection ------------------------------------

    def close(self, code: int, reason: str) -> None:
        """
        Start the closing handshake. (C{sendClose} accepts only the
        application codes; the server's own, 1001 and 1008, go through
        C{sendCloseFrame}.)
        """
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8")[:123], isReply=False)

    def _overflowed(self) -> None:
        session = self.session
        if session is not None:
            self.factory.frontend.overflowed(session)
            session.lost()
        self.closeHandshakeTimeout = OVERFLOW_CLOSE_TIMEOUT
        self.close(CLOSE_POLICY_VIOLATION, "The client does not read fast enough.")

    # -- events ------------------------------------------------------------

    def onMessage(self, payload, isBinary):
        if self.session is not None:
            self.session.received(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        if self.outbox is not None:
            self.outbox.close()
        if self.session is not None:
            self.session.lost()


class FrontendFactory(WebSocketServerFactory):
    """
    The WebSocket factory of a L{Frontend}: its settings, its clock.

    Per-message compression is not offered, so that the frame of a channel
    message is the same bytes for every subscriber.
    """

    protocol = FrontendProtocol

    def __init__(self, frontend: Frontend):
        WebSocketServerFactory.__init__(self, server="rocketd", reactor=frontend.clock)
        self.frontend = frontend
        if AUTOBAHN_TIMER:
            self._batched_timer = ClockTimer(frontend.clock)
        else:
            frontend.log.warn("This autobahn does not take rocketd's clock: WebSocket timeouts use its own.")
        ping = frontend.pingInterval or 0
        self.setProtocolOptions(
            maxMessagePayloadSize=frontend.maxMessage,
            autoPingInterval=ping,
            autoPingTimeout=ping,
            # Origins are checked in onConnect, with the frontend's policy.
            allowedOrigins=["*"],
            allowNullOrigin=True,
        )
