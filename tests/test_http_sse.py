"""
Tests for L{rocketd.http.sse}: the event framing, and L{SSEStream} on a
real twisted.web request over a L{StringTransport} with a L{Clock}.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from rocketd.http.sse import COMMENT_OPEN, COMMENT_PING, Heartbeat, SSEStream, encodeEvent, lastEventID
from tests.support import LoopbackConnection, loopbackTCPPair, parseResponse


class EncodeEventTests(TestCase):
    def test_dataOnly(self):
        self.assertEqual(encodeEvent(b"hello"), b"data: hello\n\n")

    def test_idEventAndData(self):
        """Fields come as id, event, data; text is UTF-8."""
        self.assertEqual(
            encodeEvent('{"a":"\u00e9"}', event="chat/msg", id="42"),
            b'id: 42\nevent: chat/msg\ndata: {"a":"\xc3\xa9"}\n\n',
        )

    def test_multiLineData(self):
        """Each line of the payload, whatever its line end, is a data line."""
        self.assertEqual(
            encodeEvent(b"one\ntwo\r\nthree\rfour"),
            b"data: one\ndata: two\ndata: three\ndata: four\n\n",
        )

    def test_emptyLinesSurvive(self):
        """Empty and trailing lines are kept, so the client sees the payload as sent."""
        self.assertEqual(encodeEvent(b""), b"data:\n\n")
        self.assertEqual(encodeEvent(b"a\n\nb\n"), b"data: a\ndata:\ndata: b\ndata:\n\n")

    def test_retry(self):
        self.assertEqual(encodeEvent(b"x", retry=3000), b"retry: 3000\ndata: x\n\n")

    def test_fieldInjectionRefused(self):
        """A line break in the event type or id would forge fields: refused."""
        self.assertRaises(ValueError, encodeEvent, b"x", event="a\ndata: evil")
        self.assertRaises(ValueError, encodeEvent, b"x", id="1\r")
        self.assertRaises(ValueError, encodeEvent, b"x", id=b"1\x00")


class StreamingResource(Resource):
    """Opens an L{SSEStream} for every GET."""

    isLeaf = True

    def __init__(self, heartbeat):
        Resource.__init__(self)
        self.heartbeat = heartbeat
        self.streams = []

    def render_GET(self, request):
        stream = SSEStream(request, self.heartbeat)
        self.streams.append(stream)
        stream.start()
        return NOT_DONE_YET



class SSEStreamTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.resource = StreamingResource(Heartbeat(self.clock, 15.0))

    def open(self, resource=None, extra=b""):
        # The channel's idle timeout runs on a clock of its own.
        site = Site(resource or self.resource, reactor=Clock())
        self.protocol = site.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(b"GET /events HTTP/1.1\r\nHost: example\r\n" + extra + b"\r\n")
        return (resource or self.resource).streams[-1]

    def body(self):
        return parseResponse(self.transport.value())[2]

    def disconnect(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))

    def test_startSendsHeadersAndAComment(self):
        """
        start() sends the status, the event-stream headers and a comment at
        once, before any event.
        """
        self.open()
        status, headers, body, ended = parseResponse(self.transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/event-stream; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], b"no-cache")
        self.assertEqual(headers[b"connection"], b"keep-alive")
        self.assertEqual(headers[b"x-accel-buffering"], b"no")
        self.assertEqual(body, COMMENT_OPEN)
        self.assertFalse(ended)

    def test_send(self):
        """send() writes the encoded bytes as they are, in order."""
        stream = self.open()
        first = encodeEvent(b"1", event="a", id="1")
        second = encodeEvent(b"2", event="b", id="2")
        self.assertTrue(stream.send(first))
        self.assertTrue(stream.send(second))
        self.assertEqual(self.body(), COMMENT_OPEN + first + second)

    def test_overTCP(self):
        """
        On a TCP connection, events are chunks sent straight to the socket
        (nothing waits in twisted's buffer), and the response ends properly.
        """
        ours, peer = loopbackTCPPair()
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        site = Site(self.resource, reactor=Clock())
        self.protocol = site.buildProtocol(None)
        connection = LoopbackConnection(ours, self.protocol)
        self.protocol.makeConnection(connection)
        self.protocol.dataReceived(b"GET /events HTTP/1.1\r\nHost: example\r\n\r\n")
        stream = self.resource.streams[-1]
        connection.doWrite()  # the head and the opening comment, buffered by twisted
        event = encodeEvent(b"1", event="a", id="1")
        self.assertTrue(stream.send(event))
        self.assertFalse(connection.dataBuffer or connection._tempDataBuffer)
        stream.close()
        connection.doWrite()
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += peer.recv(65536)
        status, headers, body, ended = parseResponse(data)
        self.assertEqual((status, body, ended), (200, COMMENT_OPEN + event, True))

    def test_oneHeartbeatTimer(self):
        """The streams given one heartbeat share its one timer; it stops with the last stream."""
        streams = [self.open() for _ in range(3)]
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for stream in streams:
            stream.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # And it starts again with the next one.
        self.open().close()
        self.open()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_heartbeat(self):
        """A ping comment every heartbeat seconds, events or not."""
        stream = self.open()
        self.clock.advance(14.9)
        self.assertEqual(self.body(), COMMENT_OPEN)
        self.clock.advance(0.1)
        self.assertEqual(self.body(), COMMENT_OPEN + COMMENT_PING)
        event = encodeEvent(b"x")
        stream.send(event)
        self.clock.advance(15)
        self.assertEqual(self.body(), COMMENT_OPEN + COMMENT_PING + event + COMMENT_PING)

    def test_noHeartbeat(self):
        resource = StreamingResource(None)
        self.open(resource)
        self.clock.advance(1000)
        self.assertEqual(self.body(), COMMENT_OPEN)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clientGoesAway(self):
        """
        When the client disconnects, finished fires, the heartbeat stops and
        nothing more is written.
        """
        stream = self.open()
        fired = []
        stream.finished.addCallback(fired.append)
        self.disconnect()
        self.assertEqual(fired, [None])
        self.assertTrue(stream.disconnected)
        self.assertFalse(stream.open)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        written = self.transport.value()
        self.assertFalse(stream.send(encodeEvent(b"late")))
        self.clock.advance(60)
        stream.close()
        self.assertEqual(self.transport.value(), written)

    def test_transportStopsProducing(self):
        """The transport telling its producer to stop also ends the stream."""
        stream = self.open()
        self.transport.producer.stopProducing()
        self.successResultOf(stream.finished)
        self.assertTrue(stream.disconnected)
        self.assertFalse(stream.send(b"data: x\n\n"))
        self.disconnect()

    def test_close(self):
        """close() ends the response cleanly, unregisters and fires finished."""
        stream = self.open()
        stream.close()
        self.assertIsNone(self.successResultOf(stream.finished))
        self.assertFalse(stream.disconnected)
        status, _, body, ended = parseResponse(self.transport.value())
        self.assertTrue(ended)
        self.assertIsNone(stream.request.producer)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(stream.send(encodeEvent(b"late")))
        stream.close()

    def test_backpressure(self):
        """
        The stream is the request's streaming producer: a full transport
        raises paused (and holds the heartbeat); draining lowers it and
        fires whenWritable.
        """
        stream = self.open()
        self.assertIs(stream.request.producer, stream)
        self.assertTrue(self.successResultOf(stream.whenWritable()))
        self.transport.producer.pauseProducing()
        self.assertTrue(stream.paused)
        writable = stream.whenWritable()
        self.assertNoResult(writable)
        self.clock.advance(15)
        self.assertEqual(self.body(), COMMENT_OPEN)
        self.transport.producer.resumeProducing()
        self.assertFalse(stream.paused)
        self.assertTrue(self.successResultOf(writable))
        self.clock.advance(15)
        self.assertEqual(self.body(), COMMENT_OPEN + COMMENT_PING)

    def test_whenWritableAfterEnd(self):
        """Waiting for a paused stream that ends gives False."""
        stream = self.open()
        self.transport.producer.pauseProducing()
        writable = stream.whenWritable()
        self.disconnect()
        self.assertFalse(self.successResultOf(writable))
        self.assertFalse(self.successResultOf(stream.whenWritable()))

    def test_startTwice(self):
        stream = self.open()
        self.assertRaises(RuntimeError, stream.start)

    def test_lastEventID(self):
        self.open(extra=b"Last-Event-ID: 17\r\n")
        self.assertEqual(lastEventID(self.resource.streams[-1].request), "17")
        self.open()
        self.assertIsNone(lastEventID(self.resource.streams[-1].request))


class DummyRequestTests(TestCase):
    """
    L{DummyRequest} pulls from any producer it is given until it is
    unregistered; the stream must not spin forever on it.
    """

    def test_pullingConsumer(self):
        request = DummyRequest([b"events"])
        clock = Clock()
        stream = SSEStream(request, Heartbeat(clock, 5))
        stream.start()
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(request.written, [COMMENT_OPEN])
        self.assertFalse(stream.paused)
        clock.advance(5)
        stream.send(b"data: x\n\n")
        self.assertEqual(request.written, [COMMENT_OPEN, COMMENT_PING, b"data: x\n\n"])
        stream.close()
        self.assertEqual(request.finished, 1)
        self.successResultOf(stream.finished)
        self.assertEqual(clock.getDelayedCalls(), [])
