"""
The front door (L{rocketd.http.frontdoor}) on memory transports: a hot
request is served by its handler without the site, a cold one switches the
connection to the site's protocol, pipelined answers keep their order, a
client that leaves cancels its handler, and a full write buffer pauses
reading.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from rocketd.http.exchange import HTTPResponse
from rocketd.http.frontdoor import FrontDoorFactory
from rocketd.http.guard import GuardedSite

from .support import parseResponse

HOT = b"POST /hot HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"
COLD = b"GET /cold HTTP/1.1\r\nHost: localhost\r\n\r\n"


class FrontDoorTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        root = Resource()
        root.putChild(b"cold", Data(b"cold answer", "text/plain"))
        self.site = GuardedSite(root, maxBody=100, reactor=self.clock, headTimeout=5.0)
        self.site.log = lambda request: None
        self.served = []
        self.waiting = None
        self.factory = FrontDoorFactory(self.site, self.route)

    def route(self, method, path, headers):
        if path == b"/hot":
            return self.hot
        if path == b"/wait":
            return self.wait
        return None

    def hot(self, exchange):
        self.served.append(exchange.body)
        return succeed(HTTPResponse(202, [(b"Content-Length", b"2")], b"ok"))

    def wait(self, exchange):
        self.waiting = Deferred(lambda d: self.served.append("cancelled"))
        return self.waiting

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
        )
        protocol.makeConnection(transport)
        self.addCleanup(lambda: protocol.connectionLost(None) if not transport.disconnected else None)
        return protocol, transport

    def test_hotServedWithoutTheSite(self):
        protocol, transport = self.connect()
        protocol.dataReceived(HOT)
        status, headers, body, _ = parseResponse(transport.value())
        self.assertEqual((status, body), (202, b"ok"))
        self.assertEqual(headers[b"server"][:10], b"TwistedWeb")
        self.assertEqual(self.served, [b"abc"])
        self.assertIsNone(protocol._inner)

    def test_coldHandedToTheSite(self):
        protocol, transport = self.connect()
        protocol.dataReceived(COLD)
        status, _, body, _ = parseResponse(transport.value())
        self.assertEqual((status, body), (200, b"cold answer"))
        self.assertIsNotNone(protocol._inner)

    def test_waitingHotBeforeCold(self):
        """A cold request pipelined after a waiting hot one is answered after it."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + COLD)
        self.assertEqual(transport.value(), b"")
        self.waiting.callback(HTTPResponse(204, [], b""))
        first, rest = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(first.startswith(b"HTTP/1.1 204 "))
        self.assertTrue(rest.startswith(b"HTTP/1.1 200 "))
        self.assertTrue(rest.endswith(b"cold answer"))

    def test_continueAfterEarlierAnswers(self):
        """A pipelined request's 100 Continue comes after the answer before it."""
        protocol, transport = self.connect()
        protocol.dataReceived(
            b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            b"POST /hot HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"")
        self.waiting.callback(HTTPResponse(204, [], b""))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 204 "))
        self.assertTrue(transport.value().endswith(b"\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"))
        protocol.dataReceived(b"abc")
        self.assertIn(b"HTTP/1.1 202 ", transport.value())
        self.assertEqual(self.served, [b"abc"])

    def test_clientLeavesCancels(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        protocol.connectionLost(None)
        transport.disconnected = True
        self.assertEqual(self.served, ["cancelled"])

    def test_accessLog(self):
        """A hot request is logged as the site logs its own (combined log format)."""
        lines = []
        self.site.log = lambda request: lines.append(self.site._logFormatter("[date]", request))
        protocol, transport = self.connect()
        protocol.dataReceived(HOT)
        self.assertEqual(lines, ['"127.0.0.1" - - [date] "POST /hot HTTP/1.1" 202 2 "-" "-"'])

    def test_backpressurePausesReading(self):
        protocol, transport = self.connect()
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_headDeadline(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /hot HTTP/1.1\r\nHo")
        self.clock.advance(5.0)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.site.headTimeouts, 1)
