"""
Tests for L{rocketd.http.connections}: the request head deadline on a
real L{BoundedSite} over memory transports and a Clock, the connection
cap, the listen backlog and the file descriptor limit.
"""

from __future__ import annotations

import os
import socket

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from rocketd.app import ADMIN_MAX_CONNECTIONS, Rocketd, makeRocketdService
from rocketd.config import Config, ConfigError, loadConfig
from rocketd.http import connections
from rocketd.http.connections import (
    DEFAULT_BACKLOG,
    EVICT_AFTER,
    EVICT_SLACK,
    REPORT_INTERVAL,
    ConnectionLimitFactory,
    LimitingReactor,
    fitToFileLimit,
    listenBacklog,
    withBacklog,
)
from rocketd.http.limits import BoundedSite
from tests.support import MOON, parseResponse, temporaryDirectory
from tests.test_webrocket_frontend_protocol import clientFrame, upgradeRequest

HEAD_TIMEOUT = 10.0
PEER = IPv4Address("TCP", "127.0.0.1", 50000)
GET = b"GET /hello HTTP/1.1\r\nHost: example.test\r\nUser-Agent: slow\r\n\r\n"


class Hello(Resource):
    """C{/hello} answers C{hello}; C{/stream} stays open, writing when told."""

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.streams = []

    def render(self, request):
        if request.path == b"/stream":
            request.setHeader(b"Content-Type", b"text/event-stream")
            request.write(b"data: open\n\n")
            self.streams.append(request)
            return NOT_DONE_YET
        return b"hello"


class HeadDeadlineTests(TestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        self.resource = Hello()
        self.site = BoundedSite(self.resource, maxBody=1024, headTimeout=HEAD_TIMEOUT, reactor=self.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self):
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        self.addCleanup(lambda: transport.disconnecting or protocol.connectionLost(Failure(ConnectionDone())))
        return protocol, transport

    def trickle(self, protocol, transport, data, interval=1.0):
        """Send C{data} a byte every C{interval} seconds; stop if the server closes."""
        for i in range(len(data)):
            if transport.disconnecting:
                return i
            protocol.dataReceived(data[i : i + 1])
            self.clock.advance(interval)
        return len(data)

    def test_trickledHeadGets408(self):
        """
        A head sent a byte a second (each byte well within the idle
        timeout) is answered with a plain-text 408 and closed when the
        deadline passes, not before.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(HEAD_TIMEOUT - 2)
        self.assertFalse(transport.disconnecting)
        sent = self.trickle(protocol, transport, b"X-Slow: " + b"a" * 30 + b"\r\n\r\n")
        self.assertLess(sent, 10)
        self.assertTrue(transport.disconnecting)
        status, headers, body, _ = parseResponse(transport.value())
        self.assertEqual(status, 408)
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(int(headers[b"content-length"]), len(body))
        self.assertEqual(body, b"The request head did not arrive in time.\n")
        self.assertEqual(self.resource.streams, [])
        self.assertEqual(self.site.headTimeouts, 1)

    def test_408ThenAbort(self):
        """A client that does not let the 408 out is aborted after C{abortTimeout}."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /hel")
        self.clock.advance(HEAD_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.clock.advance(protocol._channel.abortTimeout)
        self.assertTrue(transport.disconnected)

    def test_silentConnection(self):
        """A connection that sends nothing is closed at the deadline, without an answer."""
        protocol, transport = self.connect()
        self.clock.advance(HEAD_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_headInTime(self):
        """A head that trickles in within the deadline is served, and the connection kept."""
        protocol, transport = self.connect()
        self.assertEqual(self.trickle(protocol, transport, GET, interval=(HEAD_TIMEOUT - 1) / len(GET)), len(GET))
        status, headers, body, _ = parseResponse(transport.value())
        self.assertEqual((status, body), (200, b"hello"))
        self.clock.advance(HEAD_TIMEOUT * 2)
        self.assertFalse(transport.disconnecting)

    def test_keepAlive(self):
        """
        On a keep-alive connection, the wait for the next request is the
        idle timeout's; the next head's deadline starts at its first byte.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        transport.clear()
        # Idle between requests, longer than the head deadline.
        self.clock.advance(HEAD_TIMEOUT * 3)
        self.assertFalse(transport.disconnecting)
        # The second request, slowly but in time.
        self.trickle(protocol, transport, GET, interval=(HEAD_TIMEOUT - 1) / len(GET))
        status, _, body, _ = parseResponse(transport.value())
        self.assertEqual((status, body), (200, b"hello"))
        transport.clear()
        # The third one, too slowly.
        self.clock.advance(HEAD_TIMEOUT * 3)
        protocol.dataReceived(b"G")
        self.clock.advance(HEAD_TIMEOUT - 1)
        protocol.dataReceived(b"ET /")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(parseResponse(transport.value())[0], 408)

    def test_pipelinedHead(self):
        """The start of a next request in the same read as a whole one is timed from then."""
        protocol, transport = self.connect()
        protocol.dataReceived(GET + b"GET /hel")
        self.assertIn(b"200 OK", transport.value())
        transport.clear()
        self.clock.advance(HEAD_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(parseResponse(transport.value())[0], 408)

    def test_pipelinedHeadWithoutTheLineBuffer(self):
        """
        Where Twisted keeps no C{_buffer} (the check at import), a pipelined
        request is still served; its head's deadline starts with its next
        bytes.
        """
        self.patch(connections, "LINE_BUFFER_PRIVATE", False)
        protocol, transport = self.connect()
        protocol.dataReceived(GET + b"GET /hel")
        self.assertIn(b"200 OK", transport.value())
        transport.clear()
        self.clock.advance(HEAD_TIMEOUT * 2)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"lo HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(HEAD_TIMEOUT)
        self.assertEqual(parseResponse(transport.value())[0], 408)

    def test_withoutTwistedsHTTP2Wrapper(self):
        """
        Where Twisted has no C{_GenericHTTPChannelProtocol} (the check at
        import), the site's protocol is the channel itself, with its deadline.
        """
        self.patch(connections, "_GenericHTTPChannelProtocol", None)
        protocol, transport = self.connect()
        self.assertIsInstance(protocol, connections.HeadDeadlineChannel)
        protocol.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        protocol.dataReceived(b"GET")
        self.clock.advance(HEAD_TIMEOUT)
        self.assertIn(b"408", transport.value())

    def test_408ThenAbortIsOurs(self):
        """
        The abort after a 408 nobody reads is a call of the channel's own,
        cancelled when the connection goes.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET")
        self.clock.advance(HEAD_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        abort = protocol._channel._headAbort
        self.assertTrue(abort.active())
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(abort.active())
        self.assertIsNone(protocol._channel._headAbort)

    def test_streamNotCut(self):
        """A response that stays open (a stream) is not cut by the deadline of its head."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        [stream] = self.resource.streams
        for i in range(20):
            self.clock.advance(HEAD_TIMEOUT)
            stream.write(b"data: %d\n\n" % (i,))
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(b" 408 ", transport.value())
        self.assertIn(b"data: 19", transport.value())
        stream.finish()

    def test_bodyNotTimed(self):
        """A body is the idle timeout's business, not the head deadline's."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
        self.trickle(protocol, transport, b"b" * 20, interval=2.0)
        self.assertEqual(parseResponse(transport.value())[0], 200)
        self.assertFalse(transport.disconnecting)

    def test_rocketdSite(self):
        """The daemon's sites have the configured deadline."""
        rocketd = Rocketd(Config(state_dir=temporaryDirectory(self).path, head_timeout=3.5), self.clock)
        self.successResultOf(rocketd.start())
        for site in (rocketd.site(), rocketd.adminSite()):
            self.assertEqual(site.headTimeout, 3.5)
            self.assertIs(site.reactor, self.clock)


class Recorder(Protocol):
    lost = None

    def connectionLost(self, reason):
        self.lost = reason


def accept(factory):
    """
    A new connection accepted by C{factory} over a memory transport.

    @return: C{(protocol, transport)}, or None if the factory refused it.
    """
    protocol = factory.buildProtocol(PEER)
    if protocol is None:
        return None
    transport = StringTransport(peerAddress=PEER)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


class ConnectionLimitTests(TestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        self.events = []
        self.factory = ConnectionLimitFactory(Factory.forProtocol(Recorder), 2, clock=self.clock, name="main")
        self.factory.log = Logger(observer=self.events.append)
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)

    def connect(self):
        connection = accept(self.factory)
        return connection and connection[0]

    def test_beyondTheCap(self):
        """
        The connection beyond the cap is refused (closed by the port as
        soon as it is accepted) and counted; once one closes, a new one is
        accepted.
        """
        first, second = self.connect(), self.connect()
        self.assertEqual(self.factory.openConnections, 2)
        self.assertIsNone(self.connect())
        self.assertIsNone(self.connect())
        self.assertEqual(self.factory.refused, 2)
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.openConnections, 1)
        third = self.connect()
        self.assertIsNotNone(third)
        self.assertIsNone(self.connect())
        self.assertEqual(self.factory.refused, 3)

    def test_protocolKeepsTheSocket(self):
        """The wrapped protocol writes to the connection itself, not through the wrapper."""
        protocol = self.connect()
        self.assertIs(protocol.wrappedProtocol.transport, protocol.transport)
        lost = protocol.wrappedProtocol
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(lost.lost)

    def test_warningAtMostOnceAMinute(self):
        """The first refusal is logged at once, the next ones once a minute with their count."""
        self.connect(), self.connect()
        self.assertIsNone(self.connect())
        self.assertEqual([e["count"] for e in self.events], [1])
        self.assertEqual(self.events[0]["log_level"].name, "warn")
        for i in range(5):
            self.clock.advance(REPORT_INTERVAL / 10)
            self.connect()
        self.assertEqual(len(self.events), 1)
        self.clock.advance(REPORT_INTERVAL / 2)
        self.assertEqual([e["count"] for e in self.events], [1, 5])
        self.assertEqual(self.events[-1]["total"], 6)
        # Quiet for a minute: nothing to say, and the next refusal is told at once.
        self.clock.advance(REPORT_INTERVAL * 3)
        self.assertEqual(len(self.events), 2)
        self.connect()
        self.assertEqual([e["count"] for e in self.events], [1, 5, 1])

    def test_stop(self):
        """Stopping tells the count not told yet, and leaves no timer."""
        self.connect(), self.connect(), self.connect(), self.connect(), self.connect()
        self.factory.doStop()
        self.assertEqual([e["count"] for e in self.events], [1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.factory.doStart()

    def test_webSocketTakeover(self):
        """
        A WebSocket that takes a connection over stays counted until it
        closes.
        """
        rocketd = Rocketd(Config(state_dir=temporaryDirectory(self).path, vhosts={"/moon": MOON}), self.clock)
        self.successResultOf(rocketd.start())
        factory = ConnectionLimitFactory(rocketd.site(), 1, clock=self.clock, name="main")
        factory.doStart()
        self.addCleanup(factory.doStop)
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(upgradeRequest(b"/moon"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertEqual(rocketd.frontend.connections, 1)
        # Taken over: the wrapper stays the connection's protocol, and
        # hands everything to the WebSocket.
        self.assertIs(transport.protocol, protocol)
        self.assertIsInstance(protocol.wrappedProtocol, WebSocketServerProtocol)
        self.assertEqual(factory.openConnections, 1)
        self.assertIsNone(factory.buildProtocol(PEER))
        protocol.dataReceived(clientFrame(b'{"close": {}}'))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.openConnections, 0)
        self.assertEqual(rocketd.frontend.connections, 0)


    def test_insideAWrapper(self):
        """
        Inside another wrapper (which is the transport), the wrapper is its
        protocol's transport, and a takeover of the wrapper's protocol
        (as autobahn does over such a transport) leaves it counted.
        """
        outer = ProtocolWrapper(WrappingFactory(self.factory), None)
        tracked = self.factory.buildProtocol(PEER)
        outer.wrappedProtocol = tracked
        outer.makeConnection(StringTransport(peerAddress=PEER))
        self.assertIs(tracked.wrappedProtocol.transport, tracked)
        self.assertEqual(self.factory.openConnections, 1)
        takeover = Recorder()
        tracked.wrappedProtocol.transport.wrappedProtocol = takeover
        outer.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.openConnections, 0)
        self.assertIsNotNone(takeover.lost)


class EvictionTests(TestCase):
    """
    At the cap, a new connection takes the place of the one that has
    waited longest for its request head, if that is at least EVICT_AFTER
    seconds: trickling clients can't keep out a client that sends its head
    at once.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.resource = Hello()
        self.site = BoundedSite(self.resource, maxBody=1024, headTimeout=HEAD_TIMEOUT, reactor=self.clock)
        self.events = []
        self.factory = ConnectionLimitFactory(self.site, 2, clock=self.clock, name="main")
        self.factory.log = Logger(observer=self.events.append)
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)

    def connect(self):
        """@return: (protocol, transport), or None if refused."""
        return accept(self.factory)

    def lose(self, connection):
        """The reactor tells an aborted connection's protocol it is gone."""
        protocol, transport = connection
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_oldestWaitingHeadMakesRoom(self):
        """
        The connection that has waited longest for its head is aborted
        (nothing written to it) and the new one is served; the count and
        the warning say so.
        """
        old = self.connect()
        old[0].dataReceived(b"GET /hello HTTP/1.1\r\n")
        self.clock.advance(1)
        young = self.connect()
        self.clock.advance(EVICT_AFTER - 1)
        new = self.connect()
        self.assertIsNotNone(new)
        self.assertTrue(old[1].disconnected)
        self.assertEqual(old[1].value(), b"")
        self.assertFalse(young[1].disconnecting)
        # The aborted connection's last bytes go nowhere.
        old[0].dataReceived(b"Host: x\r\n\r\n")
        self.assertEqual(old[1].value(), b"")
        self.lose(old)
        self.assertEqual(self.factory.openConnections, 2)
        new[0].dataReceived(GET)
        self.assertIn(b"200 OK", new[1].value())
        self.assertEqual((self.factory.evicted, self.factory.refused), (1, 0))
        [event] = self.events
        self.assertEqual((event["evictedCount"], event["count"]), (1, 0))

    def test_tooRecentIsRefused(self):
        """A connection that has waited less than EVICT_AFTER keeps its place: the new one is refused."""
        first, second = self.connect(), self.connect()
        self.clock.advance(EVICT_AFTER - 0.1)
        self.assertIsNone(self.connect())
        self.assertEqual((self.factory.evicted, self.factory.refused), (0, 1))
        self.assertFalse(first[1].disconnecting)

    def test_servedConnectionsStay(self):
        """
        Connections past their head (a stream), or idle between keep-alive
        requests, are never closed to make room.
        """
        stream, keepAlive = self.connect(), self.connect()
        stream[0].dataReceived(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        keepAlive[0].dataReceived(GET)
        self.assertIn(b"hello", keepAlive[1].value())
        self.clock.advance(EVICT_AFTER * 2)
        self.assertIsNone(self.connect())
        self.assertFalse(stream[1].disconnecting or keepAlive[1].disconnecting)
        # The keep-alive connection's next head waits like any other.
        keepAlive[0].dataReceived(b"GET /hello HTTP/1.1\r\n")
        self.clock.advance(EVICT_AFTER)
        self.assertIsNotNone(self.connect())
        self.assertTrue(keepAlive[1].disconnected)
        self.assertFalse(stream[1].disconnecting)

    def test_boundedOvershoot(self):
        """
        While aborted connections have not gone yet, at most EVICT_SLACK
        connections beyond the cap are open.
        """
        self.factory.maxConnections = 1
        # No 408s while the time goes by: only the cap closes connections.
        self.site.headTimeout = None
        waiting = [self.connect()]
        for i in range(EVICT_SLACK * 2):
            self.clock.advance(EVICT_AFTER)
            waiting.append(self.connect())
        accepted = [c for c in waiting if c is not None]
        self.assertEqual(len(accepted), 1 + EVICT_SLACK)
        self.assertEqual(self.factory.openConnections, 1 + EVICT_SLACK)
        self.assertEqual((self.factory.evicted, self.factory.refused), (EVICT_SLACK, EVICT_SLACK))
        for connection in accepted[:-1]:
            self.assertTrue(connection[1].disconnected)
            self.lose(connection)
        self.assertEqual(self.factory.openConnections, 1)
        self.assertEqual(len(self.site.waitingHeads), 1)

    def test_headTimeoutLeavesTheQueue(self):
        """A connection answered 408, or lost, no longer waits to be closed."""
        first = self.connect()
        first[0].dataReceived(b"GET")
        second = self.connect()
        self.lose(second)
        self.assertEqual(len(self.site.waitingHeads), 1)
        self.clock.advance(HEAD_TIMEOUT)
        self.assertIn(b"408", first[1].value())
        self.assertEqual(len(self.site.waitingHeads), 0)


class LimitingReactorTests(TestCase):
    """The limit wraps whatever factory an endpoint listens with, outermost."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.limited = LimitingReactor(
            self.reactor, lambda factory: ConnectionLimitFactory(factory, 5, clock=self.reactor)
        )
        self.site = Factory.forProtocol(Recorder)

    def test_tcp(self):
        serverFromString(self.limited, "tcp:9080:interface=127.0.0.1:backlog=9").listen(self.site)
        [(port, factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, backlog, interface), (9080, 9, "127.0.0.1"))
        self.assertIsInstance(factory, ConnectionLimitFactory)
        self.assertIs(factory.wrappedFactory, self.site)
        self.assertEqual(self.limited.factories, [factory])

    def test_tls(self):
        """
        TLS goes inside the limit: a connection in its handshake is
        counted, and one beyond the cap is closed before any handshake.
        """
        from twisted.internet.ssl import CertificateOptions
        from twisted.protocols.tls import TLSMemoryBIOFactory

        self.limited.listenSSL(8443, self.site, CertificateOptions(), 12, "127.0.0.1")
        [(port, factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, backlog, interface), (8443, 12, "127.0.0.1"))
        self.assertIsInstance(factory, ConnectionLimitFactory)
        self.assertIsInstance(factory.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory.wrappedFactory, self.site)

    def test_unixAndSystemd(self):
        self.limited.listenUNIX("/run/x.sock", self.site, 33)
        [(address, factory, backlog, mode, wantPID)] = self.reactor.unixServers
        self.assertEqual((address, backlog), ("/run/x.sock", 33))
        self.assertIs(factory.wrappedFactory, self.site)
        self.limited.adoptStreamPort(3, socket.AF_INET, self.site)
        [(fileno, family, factory)] = self.reactor.adoptedPorts
        self.assertIs(factory.wrappedFactory, self.site)

    def test_otherCalls(self):
        """Everything else is the reactor's."""
        self.assertEqual(self.limited.seconds(), self.reactor.seconds())


class BacklogTests(TestCase):
    def test_withBacklog(self):
        """A backlog is added to the endpoint types that take one and have none."""
        for given, expected in (
            ("tcp:8080", "tcp:8080:backlog=77"),
            ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.1:backlog=77"),
            (r"tcp6:8080:interface=\:\:1", r"tcp6:8080:interface=\:\:1:backlog=77"),
            ("unix:/run/rocketd/main.sock", "unix:/run/rocketd/main.sock:backlog=77"),
            ("ssl:8443:privateKey=k.pem", "ssl:8443:privateKey=k.pem:backlog=77"),
            ("tcp:8080:backlog=5", "tcp:8080:backlog=5"),
            ("tcp:8080:127.0.0.1:5", "tcp:8080:127.0.0.1:5"),
            ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
        ):
            self.assertEqual(withBacklog(given, 77), expected)

    def test_splitDescription(self):
        """Endpoint strings are split as Twisted's own parser splits them."""
        for given, expected in (
            ("tcp:8080", (["tcp", "8080"], {})),
            (r"tcp6:8080:interface=\:\:1", (["tcp6", "8080"], {"interface": "::1"})),
            (r"ssl:8443:privateKey=k.pem:extra=a\=b", (["ssl", "8443"], {"privateKey": "k.pem", "extra": "a=b"})),
            ("unix:/run/r.sock:mode=660", (["unix", "/run/r.sock"], {"mode": "660"})),
            ("tcp:8080:127.0.0.1:5", (["tcp", "8080", "127.0.0.1", "5"], {})),
            ("a=b=c:x", (["x"], {"a": "b=c"})),
            (r"x:\\y", (["x", "\\y"], {})),
        ):
            self.assertEqual(connections.splitDescription(given), expected, given)

    def test_boundedBySomaxconn(self):
        path = self.mktemp()
        for granted, expected in (("128\n", 128), ("4096\n", DEFAULT_BACKLOG), ("junk", DEFAULT_BACKLOG)):
            with open(path, "w") as f:
                f.write(granted)
            self.assertEqual(listenBacklog(somaxconn=path), expected)
        self.assertEqual(listenBacklog(somaxconn=self.mktemp()), DEFAULT_BACKLOG)

    def service(self, **settings):
        reactor = MemoryReactorClock()
        config = Config(state_dir=temporaryDirectory(self).path, **settings)
        service = makeRocketdService(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return {port: (factory, backlog) for port, factory, backlog, interface in reactor.tcpServers}

    def test_listeners(self):
        """
        Both listeners listen with the default backlog (or the endpoint's),
        behind their connection caps.
        """
        listeners = self.service(
            listen="tcp:9080:interface=127.0.0.1", admin="tcp:9082:interface=127.0.0.1", max_connections=300
        )
        self.assertEqual(listeners[9080][1], listenBacklog())
        self.assertEqual(listeners[9082][1], listenBacklog())
        self.assertGreater(listenBacklog(), 50)
        self.assertEqual(listeners[9080][0].maxConnections, 300)
        self.assertEqual(listeners[9082][0].maxConnections, ADMIN_MAX_CONNECTIONS)
        listeners = self.service(listen="tcp:9080:backlog=7", admin="tcp:9082:interface=127.0.0.1")
        self.assertEqual(listeners[9080][1], 7)

    def test_unixListener(self):
        """A unix socket listener gets the default backlog and the cap too."""
        reactor = MemoryReactorClock()
        path = os.path.join(temporaryDirectory(self).path, "main.sock")
        config = Config(state_dir=temporaryDirectory(self).path, listen=f"unix:{path}", max_connections=40)
        service = makeRocketdService(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [(address, factory, backlog, mode, wantPID)] = reactor.unixServers
        self.assertEqual((address, backlog, factory.maxConnections), (path, listenBacklog(), 40))


class FileLimitTests(TestCase):
    def limits(self, soft, hard):
        calls = []

        def setrlimit(which, limits):
            calls.append(limits)

        return calls, (lambda which: (soft, hard)), setrlimit

    def test_raisesTheSoftLimit(self):
        calls, get, set_ = self.limits(1024, 524288)
        self.assertEqual(fitToFileLimit((4096, 128), 64, get, set_), ((4096, 128), None))
        self.assertEqual(calls, [(4288, 524288)])

    def test_lowersTheMainCap(self):
        """Under C{ulimit -n 1024}, the main cap is lowered to fit."""
        calls, get, set_ = self.limits(1024, 1024)
        self.assertEqual(fitToFileLimit((4096, 128), 64, get, set_), ((832, 128), 1024))
        self.assertEqual(calls, [])

    def test_partlyRaised(self):
        calls, get, set_ = self.limits(1024, 2048)
        self.assertEqual(fitToFileLimit((4096, 128), 64, get, set_), ((1856, 128), 2048))
        self.assertEqual(calls, [(2048, 2048)])

    def test_fits(self):
        calls, get, set_ = self.limits(8192, 8192)
        self.assertEqual(fitToFileLimit((4096, 128), 64, get, set_), ((4096, 128), None))
        infinity = connections.resource.RLIM_INFINITY
        calls, get, set_ = self.limits(infinity, infinity)
        self.assertEqual(fitToFileLimit((4096, 128), 64, get, set_), ((4096, 128), None))
        self.assertEqual(calls, [])

    def test_realLimitFits(self):
        """The process's own limit, after fitting, has room for the caps."""
        caps, fitted = fitToFileLimit((1000, 128))
        soft, _ = connections.resource.getrlimit(connections.resource.RLIMIT_NOFILE)
        self.assertLessEqual(sum(caps) + connections.FD_RESERVE, soft)


class ConfigTests(TestCase):
    def test_keys(self):
        config = loadConfig(None, {"head_timeout": "2.5", "max_connections": "100"})
        self.assertEqual((config.head_timeout, config.max_connections), (2.5, 100))
        self.assertEqual((Config().head_timeout, Config().max_connections), (10.0, 16384))
        for bad in ({"head_timeout": "0"}, {"max_connections": "0"}, {"max_connections": "many"}):
            self.assertRaises(ConfigError, loadConfig, None, bad)

    def test_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[rocketd]\nhead_timeout = 1.5\nmax_connections = 64\n")
        config = loadConfig(path)
        self.assertEqual((config.head_timeout, config.max_connections), (1.5, 64))
        os.remove(path)
