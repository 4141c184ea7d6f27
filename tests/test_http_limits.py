"""
Tests for L{rocketd.http.limits}: a real L{BoundedSite} over a
L{StringTransport}, fed raw HTTP bytes.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from rocketd.http.limits import BoundedRequest, BoundedSite, plainTooLarge

MAX = 16


class RecordingResource(Resource):
    """Answers every request with the length of the body it got."""

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.bodies = []
        self.args = []

    def render(self, request):
        body = request.content.read()
        self.bodies.append(body)
        self.args.append(request.args)
        return b"got %d" % (len(body),)


class MeasuringRequest(BoundedRequest):
    """Records the size of its content buffer after every piece of body."""

    instances = []

    def __init__(self, *args, **kwargs):
        BoundedRequest.__init__(self, *args, **kwargs)
        self.buffered = []
        MeasuringRequest.instances.append(self)

    def handleContentChunk(self, data):
        BoundedRequest.handleContentChunk(self, data)
        content = self.content
        if content is not None and not content.closed:
            self.buffered.append(content.tell())


def parseResponses(raw):
    """Split raw bytes into (status, headers, body) triples (Content-Length bodies only)."""
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        responses.append((status, headers, rest[:length]))
        raw = rest[length:]
    return responses


class BoundedSiteTests(TestCase):
    def setUp(self):
        self.resource = RecordingResource()
        self.asked = []
        self.site = BoundedSite(self.resource, maxBody=MAX, tooLargeBody=self.tooLarge)

    def tooLarge(self, request):
        self.asked.append((request.method, request.path))
        return (b"application/json", b'{"error": "too large"}')

    def connect(self, site=None):
        protocol = (site or self.site).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return protocol, transport

    def post(self, body, extra=b"", path=b"/x"):
        return (
            b"POST " + path + b" HTTP/1.1\r\nHost: example\r\n" + extra + b"Content-Length: %d\r\n\r\n" % (len(body),) + body
        )

    def test_bodyAtLimitIsServed(self):
        """A body of exactly maxBody bytes reaches the resource whole."""
        protocol, transport = self.connect()
        protocol.dataReceived(self.post(b"x" * MAX))
        [(status, _, body)] = parseResponses(transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(body, b"got %d" % (MAX,))
        self.assertEqual(self.resource.bodies, [b"x" * MAX])
        self.assertFalse(transport.disconnecting)

    def test_contentLengthOverLimit(self):
        """
        One byte over, by Content-Length: 413 with the site's answer, the
        connection closes, and the resource never runs.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(self.post(b"x" * (MAX + 1), path=b"/restms/feed/a?b=c"))
        [(status, headers, body)] = parseResponses(transport.value())
        self.assertEqual(status, 413)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(body, b'{"error": "too large"}')
        self.assertEqual(self.asked, [(b"POST", b"/restms/feed/a")])
        self.assertEqual(self.resource.bodies, [])
        self.assertTrue(transport.disconnecting)

    def test_refusedBeforeTheBodyArrives(self):
        """
        A Content-Length over the limit is refused as soon as the headers
        are in, without waiting for (or storing) the body.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"PUT /x HTTP/1.1\r\nHost: example\r\nContent-Length: 1000000000000\r\n\r\n")
        [(status, _, _)] = parseResponses(transport.value())
        self.assertEqual(status, 413)
        self.assertTrue(transport.disconnecting)

    def test_restOfConnectionIgnored(self):
        """
        After a 413 the rest of the body and any pipelined request are
        dropped: nothing more is written and the resource never runs.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /x HTTP/1.1\r\nHost: example\r\nContent-Length: 40\r\n\r\n")
        answered = transport.value()
        protocol.dataReceived(b"y" * 40)
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n")
        self.assertEqual(transport.value(), answered)
        self.assertEqual(self.resource.bodies, [])

    def test_expectContinueNotSentAfterRefusal(self):
        """An over-limit request asking for 100-continue gets only the 413."""
        protocol, transport = self.connect()
        protocol.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: example\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n"
        )
        value = transport.value()
        self.assertTrue(value.startswith(b"HTTP/1.1 413 "), value)
        self.assertNotIn(b"100 Continue", value)

    def test_chunkedAtLimitIsServed(self):
        """A chunked body of exactly maxBody bytes is served."""
        protocol, transport = self.connect()
        protocol.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n"
        )
        [(status, _, _)] = parseResponses(transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(self.resource.bodies, [b"0123456789abcdef"])

    def test_chunkedOverLimit(self):
        """
        A chunked body that grows past the limit is refused with the site's
        answer, even when the end of the body is in the same read.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n01234567\r\n9\r\n89abcdefg\r\n0\r\n\r\n"
            b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n"
        )
        [(status, _, body)] = parseResponses(transport.value())
        self.assertEqual(status, 413)
        self.assertEqual(body, b'{"error": "too large"}')
        self.assertEqual(self.resource.bodies, [])
        self.assertTrue(transport.disconnecting)

    def test_chunkedOverLimitInPieces(self):
        """Chunks arriving one read at a time are counted across reads."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /x HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(MAX):
            protocol.dataReceived(b"1\r\nz\r\n")
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b"1\r\nz\r\n")
        [(status, _, _)] = parseResponses(transport.value())
        self.assertEqual(status, 413)
        protocol.dataReceived(b"0\r\n\r\n")
        self.assertEqual(self.resource.bodies, [])

    def test_bufferNeverExceedsLimit(self):
        """
        The request's content buffer never holds more than maxBody bytes,
        whatever the client sends.
        """
        MeasuringRequest.instances = []
        site = BoundedSite(self.resource, maxBody=MAX, requestFactory=MeasuringRequest)
        protocol, transport = self.connect(site)
        protocol.dataReceived(b"POST /x HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(10):
            protocol.dataReceived(b"5\r\nabcde\r\n")
        [request] = MeasuringRequest.instances
        self.assertTrue(request.refused)
        self.assertTrue(request.buffered)
        self.assertLessEqual(max(request.buffered), MAX)

        protocol, transport = self.connect(site)
        protocol.dataReceived(self.post(b"q" * (10 * MAX)))
        request = MeasuringRequest.instances[-1]
        self.assertTrue(request.refused)
        self.assertEqual(request.buffered, [])

    def test_requestsWithinLimitKeepTheConnection(self):
        """Pipelined requests within the limit are each served on one connection."""
        protocol, transport = self.connect()
        protocol.dataReceived(self.post(b"a" * MAX) + self.post(b"b" * 3))
        statuses = [status for status, _, _ in parseResponses(transport.value())]
        self.assertEqual(statuses, [200, 200])
        self.assertEqual(self.resource.bodies, [b"a" * MAX, b"b" * 3])
        self.assertFalse(transport.disconnecting)

    def test_formBodiesAreNotParsed(self):
        """
        A form-encoded body is data (the faces stage it as a content), not
        request arguments.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(
            self.post(b"timeout=1", extra=b"Content-Type: application/x-www-form-urlencoded\r\n")
        )
        self.assertEqual(self.resource.args, [{}])
        self.assertEqual(self.resource.bodies, [b"timeout=1"])

    def test_defaultAnswerAndFailingAnswer(self):
        """
        Without a C{tooLargeBody} the 413 is plain text; a C{tooLargeBody}
        that fails falls back to it.
        """
        for tooLarge in (plainTooLarge, lambda request: 1 / 0):
            site = BoundedSite(self.resource, maxBody=MAX, tooLargeBody=tooLarge)
            protocol, transport = self.connect(site)
            protocol.dataReceived(self.post(b"x" * (MAX + 1)))
            [(status, headers, body)] = parseResponses(transport.value())
            self.assertEqual(status, 413)
            self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
            self.assertEqual(body, plainTooLarge(None)[1])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_negativeLimit(self):
        self.assertRaises(ValueError, BoundedSite, self.resource, maxBody=-1)


class ChannelCheckTests(TestCase):
    """
    The check, once at import, that twisted.web shows the request line
    before the body is in, and the fallback when it does not: the body is
    dropped as it arrives and the 413 answered once it is in.
    """

    setUp = BoundedSiteTests.setUp
    tooLarge = BoundedSiteTests.tooLarge
    connect = BoundedSiteTests.connect
    post = BoundedSiteTests.post

    def test_twistedShowsTheRequestLine(self):
        from rocketd.http import limits

        self.assertTrue(limits.CHANNEL_PRIVATES)
        self.assertTrue(limits.channelShowsRequestLine())

    def test_aChannelThatHidesItFailsTheCheck(self):
        from twisted.web.http import HTTPChannel

        from rocketd.http.limits import channelShowsRequestLine

        class Hiding(HTTPChannel):
            def allHeadersReceived(self):
                del self._command
                HTTPChannel.allHeadersReceived(self)

        self.assertFalse(channelShowsRequestLine(Hiding))

    def fallback(self):
        from rocketd.http import limits

        self.patch(limits, "CHANNEL_PRIVATES", False)
        MeasuringRequest.instances = []
        self.site.requestFactory = MeasuringRequest

    def test_fallbackContentLength(self):
        """A Content-Length over the limit: the body is dropped, then the 413 in the face's format."""
        self.fallback()
        protocol, transport = self.connect()
        request = self.post(b"x" * (MAX + 1), extra=b"Expect: 100-continue\r\n", path=b"/restms/feed/a?b=c")
        protocol.dataReceived(request[:-5])
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(request[-5:] + b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n")
        [(status, headers, body)] = parseResponses(transport.value())
        self.assertEqual(status, 413)
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(body, b'{"error": "too large"}')
        self.assertEqual(self.asked, [(b"POST", b"/restms/feed/a")])
        self.assertEqual(self.resource.bodies, [])
        self.assertEqual(MeasuringRequest.instances[0].buffered, [0, 0])
        self.assertTrue(transport.disconnecting)

    def test_fallbackChunked(self):
        """A chunked body past the limit: nothing over the limit is kept, then the 413."""
        self.fallback()
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /x HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(MAX + 4):
            protocol.dataReceived(b"1\r\nz\r\n")
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b"0\r\n\r\n")
        [(status, _, _)] = parseResponses(transport.value())
        self.assertEqual(status, 413)
        self.assertEqual(self.resource.bodies, [])
        self.assertLessEqual(max(MeasuringRequest.instances[0].buffered), MAX)
        self.assertTrue(transport.disconnecting)
