"""
Tests for the WebRocket frontend's WebSocket side: L{FrontendProtocol} on
a L{StringTransport}, its timers on a L{Clock} (handshake, pings, close),
its bounded send queue (L{Outbox}), origins, and the daemon's site handing
a vhost path's upgrade request to it and serving C{/static/}.
"""

from __future__ import annotations

import base64
import json
import os
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted.web.test.requesthelper import DummyRequest

from rocketd.app import Rocketd
from rocketd.config import Config, ConfigError, loadConfig
from rocketd.webrocket.origins import OriginPolicy, normaliseOrigin, parseOrigins
from rocketd.webrocket._outbox import Outbox
from rocketd.webrocket.frontend import OVERFLOW_CLOSE_TIMEOUT
from tests.support import MOON, serverFrames, temporaryDirectory, webrocketFrontend, webrocketSetUp

PEER = IPv4Address("TCP", "127.0.0.1", 50000)


def upgradeRequest(path=b"/moon", origin=None):
    key = base64.b64encode(os.urandom(16))
    lines = [
        b"GET " + path + b" HTTP/1.1",
        b"Host: 127.0.0.1:8080",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(b"Origin: " + origin)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def clientFrame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class ProtocolTestCase(TestCase):
    def setUp(self):
        webrocketSetUp(self)

    def frontend(self, **settings):
        settings.setdefault("allowedOrigins", ("https://app.example",))
        return webrocketFrontend(self, **settings)

    def connect(self, frontend, path=b"/moon", origin=None):
        """
        Open a connection and do the handshake.

        @return: C{(protocol, transport, response head)}.
        """
        factory = frontend.factory()
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(upgradeRequest(path, origin))
        head, _, rest = transport.value().partition(b"\r\n\r\n")
        transport.clear()
        transport.io.write(rest)
        return protocol, transport, head

    def opened(self, frontend, **kwargs):
        protocol, transport, head = self.connect(frontend, **kwargs)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        return protocol, transport

    def take(self, transport):
        # What channels hand out is written at the end of the reactor turn.
        self.clock.advance(0)
        frames = serverFrames(transport.value())
        transport.clear()
        return frames

    def messages(self, transport):
        return [json.loads(payload) for opcode, payload in self.take(transport) if opcode == 0x1]

    def send(self, protocol, document):
        protocol.dataReceived(clientFrame(json.dumps(document).encode()))


class HandshakeTests(ProtocolTestCase):
    def test_connected(self):
        protocol, transport = self.opened(self.frontend())
        [message] = self.messages(transport)
        self.assertEqual(message, {":connected": {"sid": protocol.session.sid}})

    def test_unknownVhost(self):
        _, transport, head = self.connect(self.frontend(), path=b"/mars")
        self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)
        self.assertTrue(transport.disconnecting)

    def test_origins(self):
        frontend = self.frontend()
        self.opened(frontend, origin=b"https://app.example")
        self.opened(frontend)
        _, transport, head = self.connect(frontend, origin=b"https://evil.example")
        self.assertTrue(head.startswith(b"HTTP/1.1 403"), head)

    def test_requestsAndAnswers(self):
        protocol, transport = self.opened(self.frontend())
        self.take(transport)
        self.successResultOf(self.channels.openChannel(self.moon, "news"))
        self.send(protocol, {"subscribe": {"channel": "news"}})
        self.assertEqual(self.messages(transport), [{":subscribed": {"channel": "news"}}])
        self.successResultOf(self.channels.fire(self.moon, "news", "hello", {}))
        self.assertEqual(self.messages(transport), [{"hello": {"channel": "news"}}])

    def test_connectionLostCleansUp(self):
        frontend = self.frontend()
        protocol, transport = self.opened(frontend)
        self.successResultOf(self.channels.openChannel(self.moon, "news"))
        self.send(protocol, {"subscribe": {"channel": "news"}})
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(frontend.connections, 0)
        self.assertEqual(self.successResultOf(self.channels.getChannel(self.moon, "news"))["subscribers"], 0)

    def test_handshakeTimeoutOnTheClock(self):
        """A client that never finishes its handshake is dropped, on the injected clock."""
        factory = self.frontend().factory()
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /moon HTTP/1.1\r\n")
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)

    def test_largeMessagesRefused(self):
        protocol, transport = self.opened(self.frontend(maxMessage=100))
        self.take(transport)
        protocol.dataReceived(clientFrame(b'{"auth": {"token": "' + b"x" * 200 + b'"}}'))
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(protocol.session.grant)


class PingTests(ProtocolTestCase):
    def test_idleConnectionsArePinged(self):
        protocol, transport = self.opened(self.frontend(pingInterval=30.0))
        self.take(transport)
        self.clock.advance(30)
        [(opcode, payload)] = self.take(transport)
        self.assertEqual(opcode, 0x9)
        protocol.dataReceived(clientFrame(payload, opcode=0xA))
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        self.assertEqual([opcode for opcode, _ in self.take(transport)], [0x9])

    def test_unansweredPingDrops(self):
        protocol, transport = self.opened(self.frontend(pingInterval=30.0))
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(30)
        self.assertTrue(transport.disconnecting)


class TimerCheckTests(ProtocolTestCase):
    """
    The check, once at import, that autobahn takes the injected clock's
    timer (a private attribute of its factory), and the fallback.
    """

    def test_autobahnTakesTheTimer(self):
        from rocketd.webrocket import frontend

        self.assertTrue(frontend.AUTOBAHN_TIMER)
        factory = self.frontend().factory()
        self.assertIsInstance(factory._batched_timer, frontend.ClockTimer)

    def test_aFactoryWithoutItFailsTheCheck(self):
        from autobahn.twisted.websocket import WebSocketServerFactory

        from rocketd.webrocket.frontend import autobahnTakesTimer

        class Other(WebSocketServerFactory):
            def __init__(self, *args, **kwargs):
                WebSocketServerFactory.__init__(self, *args, **kwargs)
                del self._batched_timer

        self.assertFalse(autobahnTakesTimer(Other))

    def test_fallback(self):
        """Without it, the factory keeps autobahn's own timer, with a warning, and still serves."""
        from rocketd.webrocket import frontend

        self.patch(frontend, "AUTOBAHN_TIMER", False)
        with capturedLogs() as events:
            factory = self.frontend().factory()
        self.assertNotIsInstance(factory._batched_timer, frontend.ClockTimer)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn])
        self.assertIn("autobahn", formatEvent(events[0]))


class OverflowTests(ProtocolTestCase):
    def test_slowClientIsClosedWith1008(self):
        frontend = self.frontend(sendQueue=1100)
        slow, slowTransport = self.opened(frontend)
        fast, fastTransport = self.opened(frontend)
        self.successResultOf(self.channels.openChannel(self.moon, "news"))
        for protocol in (slow, fast):
            self.send(protocol, {"subscribe": {"channel": "news"}})
        self.take(slowTransport)
        self.take(fastTransport)
        self.assertIs(slowTransport.producer, slow.outbox)
        # The transport's buffer is full: frames wait in the outbox.
        slow.outbox.pauseProducing()
        blob = "x" * 300
        for n in range(3):
            self.successResultOf(self.channels.fire(self.moon, "news", "blob", {"n": n, "b": blob}))
        self.assertEqual(self.take(slowTransport), [])
        self.assertEqual(frontend.overflows, 0)
        self.successResultOf(self.channels.fire(self.moon, "news", "blob", {"n": 3, "b": blob}))
        self.clock.advance(0)
        self.assertEqual(frontend.overflows, 1)
        [(opcode, payload)] = self.take(slowTransport)
        self.assertEqual(opcode, 0x8)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1008)
        # The others got everything, and the slow one is no subscriber any more.
        self.assertEqual([m["blob"]["n"] for m in self.messages(fastTransport)], [0, 1, 2, 3])
        self.assertEqual(self.successResultOf(self.channels.getChannel(self.moon, "news"))["subscribers"], 1)
        # The client gets some time to read the close frame, then it is cut.
        self.clock.advance(OVERFLOW_CLOSE_TIMEOUT - 0.5)
        self.assertFalse(slowTransport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(slowTransport.disconnecting)

    def overflow(self, frontend):
        """Open a client on /moon's channel news that stops reading, and overflow its send queue."""
        protocol, transport = self.opened(frontend)
        self.send(protocol, {"subscribe": {"channel": "news"}})
        self.take(transport)
        protocol.outbox.pauseProducing()
        for n in range(4):
            self.successResultOf(self.channels.fire(self.moon, "news", "blob", {"n": n, "b": "x" * 300}))
        self.clock.advance(0)
        self.assertTrue(protocol.outbox.closed)

    def test_slowClientsCountedAndWarned(self):
        """
        Clients closed for a full send queue are counted per vhost (the
        admin API's vhost document shows the count) and
        warned about at most once a minute per vhost, with the count since
        the previous line.
        """
        frontend = self.frontend(sendQueue=1100)
        self.successResultOf(self.channels.openChannel(self.moon, "news"))
        with capturedLogs() as events:
            self.overflow(frontend)
            self.clock.advance(20)
            self.overflow(frontend)
            self.overflow(frontend)
            self.assertEqual(frontend.slowClientsClosed("/moon"), 3)
            warnings = [e for e in events if e["log_level"] == LogLevel.warn and "closed" in e]
            self.assertEqual([(e["vhost"], e["count"], e["closed"]) for e in warnings], [("/moon", 1, 1)])
            self.clock.advance(40)
            warnings = [e for e in events if e["log_level"] == LogLevel.warn and "closed" in e]
            self.assertEqual([(e["count"], e["seconds"], e["closed"]) for e in warnings[1:]], [(2, 60.0, 3)])
        self.assertIn("send queue was full", formatEvent(warnings[1]))
        self.assertEqual(frontend.overflows, 3)

    def test_resumedOutboxFlushes(self):
        frontend = self.frontend(sendQueue=10000)
        protocol, transport = self.opened(frontend)
        self.successResultOf(self.channels.openChannel(self.moon, "news"))
        self.send(protocol, {"subscribe": {"channel": "news"}})
        self.take(transport)
        protocol.outbox.pauseProducing()
        for n in range(3):
            self.successResultOf(self.channels.fire(self.moon, "news", "e", {"n": n}))
        self.assertEqual(self.take(transport), [])
        protocol.outbox.resumeProducing()
        self.assertEqual([m["e"]["n"] for m in self.messages(transport)], [0, 1, 2])


class OutboxTests(TestCase):
    def setUp(self):
        self.written = []
        self.overflowed = []
        self.outbox = Outbox(self.written.append, 10, lambda: self.overflowed.append(True))

    def test_writesAtOnceWhileNotPaused(self):
        self.assertTrue(self.outbox.send(b"a" * 100))
        self.assertEqual(self.written, [b"a" * 100])

    def test_queuesWhilePausedInOrder(self):
        self.outbox.pauseProducing()
        self.outbox.send(b"1234")
        self.outbox.send(b"5678")
        self.assertEqual((self.written, self.outbox.waiting), ([], 8))
        self.outbox.resumeProducing()
        self.assertEqual(self.written, [b"1234", b"5678"])
        self.assertEqual(self.outbox.sent, 2)

    def test_newFramesWaitBehindQueued(self):
        """After a resume that is paused again halfway, a new frame goes behind the waiting ones."""
        outbox = Outbox(lambda frame: (self.written.append(frame), outbox.pauseProducing()), 100, lambda: None)
        outbox.pauseProducing()
        outbox.send(b"1")
        outbox.send(b"2")
        outbox.resumeProducing()
        outbox.send(b"3")
        self.assertEqual(self.written, [b"1"])
        outbox.resumeProducing()
        outbox.resumeProducing()
        self.assertEqual(self.written, [b"1", b"2", b"3"])

    def test_overflow(self):
        self.outbox.pauseProducing()
        self.assertTrue(self.outbox.send(b"123456"))
        self.assertFalse(self.outbox.send(b"12345"))
        self.assertEqual(self.overflowed, [True])
        self.assertTrue(self.outbox.closed)
        self.assertEqual(self.outbox.waiting, 0)
        self.outbox.resumeProducing()
        self.assertFalse(self.outbox.send(b"1"))
        self.assertEqual(self.written, [])
        self.assertEqual(self.overflowed, [True])

    def test_stopProducing(self):
        self.outbox.stopProducing()
        self.assertFalse(self.outbox.send(b"x"))


class OriginTests(TestCase):
    def test_parse(self):
        self.assertEqual(parseOrigins("*"), ("*",))
        self.assertEqual(
            parseOrigins("https://a.example, http://b.example:80"), ("https://a.example", "http://b.example")
        )
        self.assertEqual(parseOrigins("https://*.example:8443"), ("https://*.example:8443",))
        for bad in ("", "a.example", "https://a.example/path", "ftp//x"):
            self.assertRaises(ValueError, parseOrigins, bad)

    def test_normalise(self):
        self.assertEqual(normaliseOrigin("HTTPS://A.Example:443"), "https://a.example")
        self.assertEqual(normaliseOrigin("http://a.example:8080"), "http://a.example:8080")
        self.assertIsNone(normaliseOrigin("null"))

    def test_policy(self):
        policy = OriginPolicy(parseOrigins("https://*.apps.example http://localhost:8080"))
        self.assertTrue(policy.allows(None))
        self.assertTrue(policy.allows("https://chat.apps.example"))
        self.assertTrue(policy.allows("http://localhost:8080"))
        self.assertFalse(policy.allows("http://localhost:8081"))
        self.assertFalse(policy.allows("https://apps.example.evil"))
        self.assertFalse(policy.allows("null"))
        self.assertTrue(OriginPolicy(("*",)).allows("null"))

    def test_config(self):
        config = loadConfig(None, {"allowed_origins": "https://a.example", "send_queue": "4096", "ping_interval": "5"})
        self.assertEqual((config.allowed_origins, config.send_queue, config.ping_interval),
                         (("https://a.example",), 4096, 5.0))
        self.assertEqual(Config().allowed_origins, ("*",))
        self.assertRaises(ConfigError, loadConfig, None, {"allowed_origins": "nonsense"})


class SiteTests(TestCase):
    def setUp(self):
        state = temporaryDirectory(self).path
        self.reactor = MemoryReactorClock()
        self.rocketd = Rocketd(Config(state_dir=state, vhosts={"/moon": MOON}), self.reactor)
        self.successResultOf(self.rocketd.start())
        self.site = self.rocketd.site()
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def exchange(self, data):
        channel = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        # As a real transport, it knows its protocol (which the WebSocket replaces).
        transport.protocol = channel
        channel.makeConnection(transport)
        channel.dataReceived(data)
        if transport.protocol is channel:
            # Not taken over by the WebSocket: end the HTTP connection.
            channel.connectionLost(Failure(ConnectionDone()))
        return transport

    def test_vhostPathUpgrades(self):
        """The site hands an upgrade request to a vhost path to the frontend."""
        transport = self.exchange(upgradeRequest(b"/moon"))
        head, _, rest = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        [(opcode, payload)] = serverFrames(rest)
        self.assertIn(":connected", json.loads(payload))
        self.assertEqual(self.rocketd.frontend.connections, 1)
        # The connection is the WebSocket's now: frames go to it.
        transport.clear()
        transport.protocol.dataReceived(clientFrame(b'{"close": {}}'))
        [(opcode, payload)] = serverFrames(transport.value())
        self.assertEqual((opcode, struct.unpack("!H", payload[:2])[0]), (0x8, 1000))

    def test_channelPathDoesNotUpgrade(self):
        transport = self.exchange(upgradeRequest(b"/moon/channels"))
        self.assertIn(b" 401 ", transport.value().split(b"\r\n")[0])
        self.assertEqual(self.rocketd.frontend.connections, 0)

    def test_staticFiles(self):
        """C{/static/} serves the client library and the demo page, and lists no folder."""
        static = self.rocketd.root.getChildWithDefault(b"static", DummyRequest([b"static"]))
        for name, contentType, needle in (
            (b"rocket.js", b"javascript", b"function Rocket("),
            (b"demo.html", b"text/html", b"rocket.js"),
        ):
            request = DummyRequest([name])
            resource = static.getChildWithDefault(name, request)
            self.successResultOf(_render(resource, request))
            self.assertEqual(request.responseCode or 200, 200)
            self.assertIn(contentType, request.responseHeaders.getRawHeaders(b"content-type")[0])
            self.assertIn(needle, b"".join(request.written))
        request = DummyRequest([b""])
        resource = static.getChildWithDefault(b"", request)
        self.successResultOf(_render(resource, request))
        self.assertEqual(request.responseCode, 404)


def _render(resource, request):
    """Render C{resource} for a L{DummyRequest}; the Deferred fires when it is finished."""
    finished = request.notifyFinish()
    result = resource.render(request)
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
    return finished
