"""
Tests for L{rocketd.http.hosts} and L{rocketd.http.guard}: which C{Host}
values are used, what stands in for the others, and the last-resort 500
of a real L{GuardedSite} over a L{StringTransport}.
"""

from klein import Klein
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from rocketd.http.guard import INTERNAL_ERROR, GuardedSite, plainInternalError
from rocketd.http.hosts import listeningHost, neutraliseHost, validHost

from .support import BAD_HOSTS, exchange, parseResponse


class ValidHostTests(TestCase):
    def test_hosts(self):
        """Names, IPv4 and bracketed IPv6 addresses, each with an optional port."""
        for value in (
            b"example.com",
            b"example.com.",
            b"rocket.test:9999",
            b"localhost",
            b"127.0.0.1:8080",
            b"[::1]",
            b"[::1]:8080",
            b"[2001:db8::7]:80",
            b"under_score-host",
            b"a" * 63 + b".b",
            b".".join([b"a" * 63] * 3 + [b"b" * 61]),
        ):
            self.assertTrue(validHost(value), value)

    def test_notHosts(self):
        """
        Empty labels, labels over 63 characters, names over 253, bad ports
        or IPv6 addresses, non-ASCII, spaces and markup are refused.
        """
        for value in BAD_HOSTS + (
            b".a",
            b"a..",
            b"host:",
            b"host:1:2",
            b"host name",
            b" host",
            b"[::1",
            b"[::g]",
            b"::1",
            b"[fe80::1%eth0]",
            b".".join([b"a" * 63] * 4),
            b"host\r\nx",
        ):
            self.assertFalse(validHost(value), value)


class NeutraliseHostTests(TestCase):
    def request(self, hosts, address=IPv4Address("TCP", "127.0.0.1", 8080)):
        request = DummyRequest([b""])
        if hosts is not None:
            request.requestHeaders.setRawHeaders(b"host", hosts)
        request.getHost = lambda: address
        return request

    def test_validHostKept(self):
        request = self.request([b"rocket.test:9999"])
        self.assertFalse(neutraliseHost(request))
        self.assertEqual(request.requestHeaders.getRawHeaders(b"host"), [b"rocket.test:9999"])

    def test_badHostReplaced(self):
        """A Host that is no host becomes the listening address."""
        for bad in BAD_HOSTS:
            request = self.request([bad])
            self.assertTrue(neutraliseHost(request), bad)
            self.assertEqual(request.requestHeaders.getRawHeaders(b"host"), [b"127.0.0.1:8080"])

    def test_severalHostsReplaced(self):
        """Two Host headers (even two good ones) are one listening address."""
        request = self.request([b"a.test", b"b.test"])
        self.assertTrue(neutraliseHost(request))
        self.assertEqual(request.requestHeaders.getRawHeaders(b"host"), [b"127.0.0.1:8080"])

    def test_noHostLeft(self):
        """HTTP/1.0 may send no Host: nothing is added."""
        request = self.request(None)
        self.assertFalse(neutraliseHost(request))
        self.assertIsNone(request.requestHeaders.getRawHeaders(b"host"))

    def test_listeningHost(self):
        """IPv6 addresses are bracketed (without a scope); a unix socket is localhost."""
        self.assertEqual(listeningHost(self.request(None, IPv6Address("TCP", "::1", 80))), b"[::1]:80")
        self.assertEqual(listeningHost(self.request(None, IPv6Address("TCP", "fe80::1%eth0", 81))), b"[fe80::1]:81")
        self.assertEqual(listeningHost(self.request(None, UNIXAddress(b"/tmp/s"))), b"localhost")
        for address in (IPv6Address("TCP", "::1", 80), UNIXAddress(b"/tmp/s"), IPv4Address("TCP", "10.0.0.1", 1)):
            self.assertTrue(validHost(listeningHost(self.request(None, address))))


class Echo(Resource):
    """Answers with the Host header it saw."""

    isLeaf = True

    def render(self, request):
        return request.getHeader(b"host") or b"-"


class Boom(Exception):
    pass


class Raising(Resource):
    """Raises while rendering, or after starting the response when C{started}."""

    isLeaf = True

    def __init__(self, started=False):
        Resource.__init__(self)
        self.started = started

    def render(self, request):
        request.setHeader(b"etag", b'"stale"')
        if self.started:
            request.write(b"partial")
        raise Boom("the resource is broken")


class Failing(Resource):
    """Answers later, through C{processingFailed} (as the faces' errbacks do)."""

    isLeaf = True

    def render(self, request):
        from twisted.python.failure import Failure

        try:
            raise Boom("late")
        except Boom:
            request.processingFailed(Failure())
        return NOT_DONE_YET


def get(site, path=b"/", host=b"rocket.test"):
    return exchange(site, b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")


class GuardedSiteHostTests(TestCase):
    def test_badHostNeverReachesTheResource(self):
        for bad in BAD_HOSTS:
            status, _, body, _ = parseResponse(get(GuardedSite(Echo(), maxBody=10), host=bad))
            self.assertEqual((status, body), (200, b"127.0.0.1:8080"), bad)
        status, _, body, _ = parseResponse(get(GuardedSite(Echo(), maxBody=10), host=b"rocket.test:1"))
        self.assertEqual((status, body), (200, b"rocket.test:1"))

    def test_kleinWithBadHost(self):
        """A Klein app behind the site routes a request whose Host werkzeug refuses."""
        app = Klein()

        @app.route("/hello")
        def hello(request):
            return b"hello " + request.getHeader(b"host")

        for bad in (b"a..b", b"a" * 64):
            status, headers, body, _ = parseResponse(get(GuardedSite(app.resource(), maxBody=10), b"/hello", bad))
            self.assertEqual((status, body), (200, b"hello 127.0.0.1:8080"), bad)


class LastResortTests(TestCase):
    def site(self, resource, **kwargs):
        return GuardedSite(resource, maxBody=10, **kwargs)

    def json(self, request):
        return (b"application/json", b'{"error": "%s"}' % (request.path,))

    def test_raisingResource(self):
        """
        An exception out of a resource's render is a 500 in the site's
        format, without the handler's validators; the traceback is logged
        once.
        """
        raw = get(self.site(Raising(), internalError=self.json), b"/boom")
        status, headers, body, _ = parseResponse(raw)
        self.assertEqual(status, 500)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(body, b'{"error": "/boom"}')
        self.assertNotIn(b"etag", headers)
        self.assertNotIn(b"<html", raw.lower())
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_defaultIsPlainText(self):
        status, headers, body, _ = parseResponse(get(self.site(Raising())))
        self.assertEqual(status, 500)
        self.assertEqual((headers[b"content-type"], body), plainInternalError(None))
        self.assertEqual(body, INTERNAL_ERROR.encode() + b"\n")
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_laterFailure(self):
        """A face's errback that hands its failure to processingFailed gets the same answer."""
        status, headers, body, _ = parseResponse(get(self.site(Failing(), internalError=self.json), b"/late"))
        self.assertEqual((status, body), (500, b'{"error": "/late"}'))
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_brokenInternalError(self):
        """An internalError that fails falls back to plain text; both failures are logged."""

        def broken(request):
            raise ValueError("no")

        status, headers, body, _ = parseResponse(get(self.site(Raising(), internalError=broken)))
        self.assertEqual(status, 500)
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_afterTheResponseStarted(self):
        """
        Once the status is sent it can't become 500: the connection is
        closed (the body is cut short, not finished as if whole), and the
        traceback logged once.
        """
        site = self.site(Raising(started=True))
        channel = site.buildProtocol(None)
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: rocket.test\r\n\r\n")
        raw = transport.value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw)
        self.assertNotIn(b"Processing Failed", raw)
        self.assertNotIn(b"0\r\n\r\n", raw.split(b"\r\n\r\n", 1)[1])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
