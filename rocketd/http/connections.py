"""
What one client may hold of a listener: a request head has a deadline,
a listener keeps a bounded number of connections open, and its listen
queue is long enough for bursts of connects.

  - L{HeadDeadlineChannel}: Twisted's idle timeout is reset by every byte,
    so a client that trickles its request head keeps its connection for
    ever. This channel gives each request head (request line and headers)
    C{site.headTimeout} seconds in total: when they pass first, it answers
    408 and closes (see the class for when the clock starts).
  - L{ConnectionLimitFactory}: wraps a listener's factory and closes every
    connection beyond C{maxConnections} as soon as it is accepted, without
    reading from it; it counts them and logs a warning at most once a
    minute. When the wrapped factory can (a L{rocketd.http.limits.BoundedSite}
    can: see L{WaitingHeads}), the cap first makes room by closing the
    connection that has waited longest, and at least L{EVICT_AFTER}
    seconds, for its request head: trickling clients then take each
    other's places, and a client that sends its head at once is still
    served. L{LimitingReactor} puts it outermost, whatever the endpoint
    (TLS inside it). With L{fitToFileLimit}, the caps stay below the
    process's file descriptor limit, so the daemon never runs out of
    descriptors (C{EMFILE}, after which the reactor can accept nobody).

Twisted's L{twisted.protocols.policies.LimitTotalConnectionsFactory} and
L{WrappingFactory} would make their wrapper the protocol's transport:
the HTTP channel and the WebSockets would then no longer write straight
to the socket (L{rocketd.http.directwrite}). L{ConnectionLimitFactory}
is a L{WrappingFactory} whose wrapper stays out of the way.
  - L{withBacklog}: a listen queue of L{DEFAULT_BACKLOG} (Twisted's default
    is 50: a burst of connects beyond it loses SYNs, which clients resend
    only after a second).
"""

from __future__ import annotations

import resource
from typing import Callable, Optional, Sequence, Tuple

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.http import HTTPChannel

try:
    # Twisted's wrapper that would switch a channel to HTTP/2 when TLS
    # negotiates it (private; checked here, once).
    from twisted.web.http import _GenericHTTPChannelProtocol
except ImportError:  # pragma: no cover - a Twisted without it
    _GenericHTTPChannelProtocol = None

#: The listen queue asked for when an endpoint string names none.
DEFAULT_BACKLOG = 1024
#: Where Linux says the longest listen queue it grants.
SOMAXCONN = "/proc/sys/net/core/somaxconn"
#: File descriptors kept for what is not a connection: the listening
#: sockets, the reactor's, the logs, the state files.
FD_RESERVE = 64
#: Seconds between two warnings about refused connections.
REPORT_INTERVAL = 60.0
#: How long a connection must have waited for its request head before a
#: new connection at the cap may take its place.
EVICT_AFTER = 2.0
#: How many connections beyond the cap may be open while the ones closed
#: to make room for them go (well below L{FD_RESERVE}).
EVICT_SLACK = 16

#: The answer to a head that did not arrive in time.
_BODY_408 = b"The request head did not arrive in time.\n"
RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % (len(_BODY_408),)
) + _BODY_408

#: Whether this Twisted's L{HTTPChannel} keeps the bytes after a request's
#: end in C{_buffer} (private, from L{twisted.protocols.basic.LineReceiver}),
#: where a pipelined request's head waits: checked here, once. Without it,
#: a pipelined head's deadline starts only with its next bytes.
LINE_BUFFER_PRIVATE = isinstance(getattr(HTTPChannel, "_buffer", None), bytes)

# Where a connection is in its current request.
_IDLE, _HEAD, _AFTER_HEAD = "idle", "head", "after head"


class HeadClock:
    """
    The request head's deadline and its place among the site's
    L{WaitingHeads}, for a protocol that serves one site's requests (the
    L{HeadDeadlineChannel}, and the front door of L{rocketd.http.frontdoor}).

    A class using it has C{site} (with C{headTimeout} and C{waitingHeads},
    when it sets them), the attributes C{_headCall}, C{_headBytes} and
    C{_waiting} (None, False, None to begin with), C{_headLater(delay, f)}
    to call C{f} on the site's clock, and C{_headTimedOut()}, called when
    the deadline passes.
    """

    __slots__ = ()

    def _startHead(self, received: bool) -> None:
        """A request head begins (C{received}: with bytes already in)."""
        self._headBytes = received
        timeout = getattr(self.site, "headTimeout", None)
        if timeout and self._headCall is None:
            self._headCall = self._headLater(timeout, self._headTimedOut)
        waiting = getattr(self.site, "waitingHeads", None)
        if waiting is not None and self._waiting is None:
            self._waiting = waiting
            waiting.add(self)

    def _stopHead(self) -> None:
        """The head is in, or the connection is going: no deadline, not waiting."""
        if self._headCall is not None:
            if self._headCall.active():
                self._headCall.cancel()
            self._headCall = None
        if self._waiting is not None:
            self._waiting.discard(self)
            self._waiting = None


class HeadDeadlineChannel(HeadClock, HTTPChannel):
    """
    An L{HTTPChannel} that gives every request head C{site.headTimeout}
    seconds (None or 0: no deadline) on its C{callLater}, the site's
    reactor.

    The clock starts when the connection is made, for its first request
    (a client that connects and sends nothing is closed then, without an
    answer), and at the first byte of each further request on a
    keep-alive connection: a connection idle between requests is
    governed by the idle timeout (C{timeOut}) alone. The clock stops when
    the last header line is in; the body, the handling and the response
    (streams, long polls, WebSockets) are not timed by it. When it runs
    out with part of a head in, the client gets a plain-text 408 with
    C{Connection: close}, and the connection is closed (aborted if the
    client does not let the answer out within C{abortTimeout}). Each
    time, C{site.headTimeouts} (when the site has it) counts one more.
    """

    _log = Logger()
    _phase = _IDLE
    _headCall = None
    _headBytes = False
    _headAbort = None
    _waiting = None

    def connectionMade(self):
        HTTPChannel.connectionMade(self)
        self._startHead(received=False)

    def dataReceived(self, data):
        if data:
            if self._phase == _IDLE:
                self._startHead(received=True)
            else:
                self._headBytes = True
        HTTPChannel.dataReceived(self, data)

    def allHeadersReceived(self):
        # Before the request sees its headers: it may answer at once (413).
        self._stopHead()
        self._phase = _AFTER_HEAD
        HTTPChannel.allHeadersReceived(self)

    def requestDone(self, request):
        self._phase = _IDLE
        # Buffered bytes of a pipelined request come back through
        # dataReceived, and start the next head's clock there.
        HTTPChannel.requestDone(self, request)
        if self._phase == _IDLE and self.persistent and LINE_BUFFER_PRIVATE and self._buffer:
            # The next request's first bytes came in the same read as the
            # end of this one, and are waiting in the line buffer.
            self._startHead(received=True)

    def connectionLost(self, reason):
        self._stopHead()
        if self._headAbort is not None:
            if self._headAbort.active():
                self._headAbort.cancel()
            self._headAbort = None
        HTTPChannel.connectionLost(self, reason)

    def _startHead(self, received: bool) -> None:
        self._phase = _HEAD
        HeadClock._startHead(self, received)

    def _headLater(self, delay, f):
        # The channel's clock: its factory's reactor (HTTPFactory sets it).
        return self.callLater(delay, f)

    def evict(self) -> None:
        """
        Close this connection, which is waiting for a request head, at
        once and without an answer, to make room for a new one (see
        L{WaitingHeads}).
        """
        self._stopHead()
        self.persistent = False
        self.dataReceived = self.lineReceived = lambda *args: None
        transport = self.transport
        if transport is not None and not transport.disconnecting:
            self._log.debug("Closed to make room: {peer}", peer=str(transport.getPeer()))
            transport.abortConnection()

    def _headTimedOut(self) -> None:
        self._headCall = None
        self._stopHead()
        transport = self.transport
        if transport is None or transport.disconnecting:
            return
        counted = getattr(self.site, "headTimeouts", None)
        if counted is not None:
            self.site.headTimeouts = counted + 1
        self._log.debug("Request head timed out: {peer}", peer=str(transport.getPeer()))
        # Nothing more of this connection is parsed.
        self.persistent = False
        self.dataReceived = self.lineReceived = lambda *args: None
        if self._headBytes:
            transport.write(RESPONSE_408)
        if self.abortTimeout is not None:
            # As twisted.web's own idle timeout does, with a call of our own.
            self._headAbort = self.callLater(self.abortTimeout, self._abortAfterHeadTimeout)
        self.loseConnection()

    def _abortAfterHeadTimeout(self) -> None:
        """The client did not let the 408 out in time: drop the connection."""
        self._headAbort = None
        if self.transport is not None:
            self.transport.abortConnection()


class WaitingHeads:
    """
    The connections of one site that wait for a request head, in the
    order they began to wait (the oldest first), and when: what a
    L{ConnectionLimitFactory} at its cap may close to make room.

    A L{HeadDeadlineChannel} adds itself when a head begins (its
    connection is made, or the first byte of a further request comes)
    and leaves when the head is in or the connection is lost.
    """

    __slots__ = ("_clock", "_since")

    def __init__(self, clock):
        """
        @param clock: an L{IReactorTime}, for when each began to wait.
        """
        self._clock = clock
        # channel -> when it began to wait; dicts keep insertion order,
        # so the first is the oldest.
        self._since: dict = {}

    def __len__(self) -> int:
        return len(self._since)

    def add(self, channel) -> None:
        """C{channel} begins to wait for a head."""
        self._since[channel] = self._clock.seconds()

    def discard(self, channel) -> None:
        """C{channel} waits no more."""
        self._since.pop(channel, None)

    def evictOldest(self, minimumWait: float = EVICT_AFTER) -> bool:
        """
        Close the connection that has waited longest, if it has waited at
        least C{minimumWait} seconds (see L{HeadDeadlineChannel.evict}).

        @return: whether one was closed.
        """
        for channel, since in self._since.items():
            if self._clock.seconds() - since < minimumWait:
                return False
            del self._since[channel]
            channel._waiting = None
            channel.evict()
            return True
        return False


def headDeadlineProtocol(factory=None):
    """
    What an L{HTTPFactory}'s C{protocol} builds: Twisted's own wrapper
    (which would switch to HTTP/2 when TLS negotiates it) around a
    L{HeadDeadlineChannel}.
    """
    if _GenericHTTPChannelProtocol is None:
        return HeadDeadlineChannel()
    return _GenericHTTPChannelProtocol(HeadDeadlineChannel())


class _Tracked(ProtocolWrapper):
    """
    The wrapper that tells a L{ConnectionLimitFactory} when its connection
    is made and lost.

    Unlike a plain L{ProtocolWrapper}, it is not its protocol's transport
    when the transport is a plain TCP or unix connection: the HTTP channel
    and what takes the connection over (a WebSocket) write straight to
    the socket (see L{rocketd.http.directwrite}). A protocol that takes
    the connection over replaces this wrapper's C{wrappedProtocol}
    (autobahn's WebSocketResource does, as the transport's protocol is a
    L{ProtocolWrapper}), so the wrapper stays, and still hears the end.
    Inside another wrapper, it is the transport, as any wrapper (and a
    takeover replaces its C{wrappedProtocol} again).
    """

    def makeConnection(self, transport):
        if isinstance(transport, ProtocolWrapper):
            ProtocolWrapper.makeConnection(self, transport)
            return
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(transport)

    def logPrefix(self):
        wrapped = self.wrappedProtocol
        return wrapped.logPrefix() if hasattr(wrapped, "logPrefix") else wrapped.__class__.__name__


class ConnectionLimitFactory(WrappingFactory):
    """
    A listener's factory that keeps at most C{maxConnections} connections
    open: the next one is closed as soon as it is accepted (nothing is
    read from it, nothing is answered: the cheapest way to say no), and
    counted.

    A warning says how many were refused: at the first refusal, then at
    most once every L{REPORT_INTERVAL} seconds (on C{clock}) while
    refusals go on, with the count since the last warning (and when the
    listener stops, if some were not told yet).

    At the cap, when the wrapped factory has an C{evictWaitingHead()}
    method (L{rocketd.http.limits.BoundedSite}), the new connection is
    accepted if that closes a connection that has waited long enough for
    its request head (see L{WaitingHeads}); such closed connections are
    counted too, and told in the same warning. At most L{EVICT_SLACK}
    connections beyond the cap are open while those go.

    @ivar maxConnections: the most connections open at once.
    @ivar refused: how many connections were refused, in all.
    @ivar evicted: how many connections waiting for their head were
        closed to make room, in all.
    @ivar name: the listener's name, for the log.
    """

    protocol = _Tracked
    noisy = False
    log = Logger()

    def __init__(self, wrappedFactory, maxConnections: int, clock, name: str = "listener"):
        if maxConnections < 1:
            raise ValueError("maxConnections must be at least 1")
        WrappingFactory.__init__(self, wrappedFactory)
        self.maxConnections = maxConnections
        self.clock = clock
        self.name = name
        self.refused = 0
        self.evicted = 0
        self._unreported = 0
        self._unreportedEvicted = 0
        self._reportCall = None
        self._evict = getattr(wrappedFactory, "evictWaitingHead", None)

    @property
    def openConnections(self) -> int:
        """How many connections are open now."""
        return len(self.protocols)

    def logPrefix(self):
        # The listener's log lines read as they did without the limit.
        return self.wrappedFactory.logPrefix()

    def buildProtocol(self, addr):
        if len(self.protocols) >= self.maxConnections:
            if (
                self._evict is not None
                and len(self.protocols) < self.maxConnections + EVICT_SLACK
                and self._evict()
            ):
                self.evicted += 1
                self._unreportedEvicted += 1
                if self._reportCall is None:
                    self._report()
            else:
                self.refused += 1
                self._unreported += 1
                if self._reportCall is None:
                    self._report()
                return None
        return WrappingFactory.buildProtocol(self, addr)

    def _report(self) -> None:
        self._reportCall = None
        if not (self._unreported or self._unreportedEvicted):
            return
        self.log.warn(
            "The {name} listener refused {count} connection(s) and closed {evictedCount} waiting "
            "for their request head to make room, since the last report ({total} and {evictedTotal} "
            "in all): {max} were open, its limit (max_connections).",
            name=self.name,
            count=self._unreported,
            total=self.refused,
            evictedCount=self._unreportedEvicted,
            evictedTotal=self.evicted,
            max=self.maxConnections,
        )
        self._unreported = self._unreportedEvicted = 0
        self._reportCall = self.clock.callLater(REPORT_INTERVAL, self._report)

    def stopFactory(self):
        # What was refused since the last warning is told now.
        if self._reportCall is not None and self._reportCall.active():
            self._reportCall.cancel()
        self._report()
        if self._reportCall is not None:
            self._reportCall.cancel()
        self._reportCall = None
        WrappingFactory.stopFactory(self)


class LimitingReactor:
    """
    The reactor that a listener's endpoint listens through: every factory
    it listens with is wrapped by C{limit} (e.g. in a
    L{ConnectionLimitFactory}) at the outermost level, so that the limit
    counts every socket of the listener. For C{ssl:} endpoints, the TLS
    layer goes inside the limit (as the reactor's own C{listenSSL} does
    it, over C{listenTCP}): connections still in their handshake are
    counted, and a refused one is closed before any handshake.

    Endpoints that listen with C{listenTCP} (C{tcp}, C{tcp6}),
    C{listenUNIX} (C{unix}), C{listenSSL} (C{ssl}) or C{adoptStreamPort}
    (C{systemd}) are limited; anything else goes to the reactor as it is.

    @ivar factories: the wrapping factories made, in order.
    """

    def __init__(self, reactor, limit: Callable[[object], object]):
        self._reactor = reactor
        self._limit = limit
        self.factories: list = []

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def _wrap(self, factory):
        wrapped = self._limit(factory)
        self.factories.append(wrapped)
        return wrapped

    def listenTCP(self, port, factory, backlog=50, interface=""):
        return self._reactor.listenTCP(port, self._wrap(factory), backlog, interface)

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        return self._reactor.listenUNIX(address, self._wrap(factory), backlog, mode, wantPID)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(contextFactory, False, factory)
        port = self._reactor.listenTCP(port, self._wrap(tls), backlog, interface)
        port._type = "TLS"
        return port

    def adoptStreamPort(self, fileDescriptor, addressFamily, factory):
        return self._reactor.adoptStreamPort(fileDescriptor, addressFamily, self._wrap(factory))


def listenBacklog(wanted: int = DEFAULT_BACKLOG, somaxconn: str = SOMAXCONN) -> int:
    """
    @return: C{wanted}, or less if the kernel grants less (it would
        silently cut it to C{somaxconn} anyway).
    """
    try:
        with open(somaxconn) as f:
            granted = int(f.read().strip())
    except (OSError, ValueError):
        return wanted
    return max(1, min(wanted, granted))


#: Endpoint type -> the index, in its positional arguments (the type
#: first), that is the backlog.
_BACKLOG_POSITION = {"tcp": 3, "tcp6": 2, "unix": 3, "ssl": 6}


def splitDescription(description: str) -> Tuple[list, dict]:
    """
    Split an endpoint string as L{twisted.internet.endpoints} reads it:
    parts separated by C{:}, a part with C{=} a keyword argument (split at
    its first C{=}), a backslash making the next character plain.

    @return: C{(args, kwargs)}, the endpoint type first in C{args}.
    """
    args: list = []
    kwargs: dict = {}
    part: list = []
    equals = None
    escaped = False

    def end() -> None:
        text = "".join(part)
        if equals is None:
            args.append(text)
        else:
            kwargs[text[:equals]] = text[equals + 1 :]

    for char in description:
        if escaped:
            part.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            end()
            part, equals = [], None
        else:
            if char == "=" and equals is None:
                equals = len(part)
            part.append(char)
    end()
    return args, kwargs


def withBacklog(description: str, backlog: int) -> str:
    """
    @param description: a server endpoint string.
    @return: C{description} with C{:backlog=BACKLOG} appended when it is a
        C{tcp}, C{tcp6}, C{unix} or C{ssl} endpoint that names no backlog;
        otherwise C{description} as it is.
    """
    args, kwargs = splitDescription(description)
    position = _BACKLOG_POSITION.get(args[0] if args else None)
    if position is None or "backlog" in kwargs or len(args) > position:
        return description
    return f"{description}:backlog={backlog}"


def fitToFileLimit(
    caps: Sequence[int],
    reserve: int = FD_RESERVE,
    getrlimit: Callable[[int], Tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, Tuple[int, int]], None] = resource.setrlimit,
) -> Tuple[Tuple[int, ...], Optional[int]]:
    """
    Make room for C{caps} connections (one cap per listener) and
    C{reserve} more descriptors: raise the soft C{RLIMIT_NOFILE} as far as
    that needs (never beyond the hard limit); if that is not enough, lower
    the first cap (the main listener's) until everything fits.

    @return: C{(caps, limit)}: the caps to use, and the soft limit they
        were fitted to when the first cap had to be lowered (else None).
    """
    caps = tuple(caps)
    needed = sum(caps) + reserve
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if raised > soft:
            try:
                setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (OSError, ValueError):
                pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return caps, None
    first = max(1, soft - reserve - sum(caps[1:]))
    return (first, *caps[1:]), soft
