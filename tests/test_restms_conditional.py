"""
Tests for L{rocketd.restms.conditional} (validators and conditions) and
L{rocketd.restms._uris} (the URIs the face writes and reads), on
L{DummyRequest}s.
"""

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial.unittest import TestCase
from twisted.web.test.requesthelper import DummyRequest

from rocketd.restms._uris import Reference, baseURI, domainPath, parseReference
from rocketd.restms.conditional import ANY, Validators, notModified, parseTags, preconditionFailed

# 2009-02-13 23:31:30 GMT
WHEN = 1234567890
DATE = b"Fri, 13 Feb 2009 23:31:30 GMT"
EARLIER = b"Fri, 13 Feb 2009 23:31:29 GMT"


def request(method=b"GET", **headers):
    r = DummyRequest([b""])
    r.method = method
    r.isSecure = lambda: False
    for name, value in headers.items():
        r.requestHeaders.setRawHeaders(name.replace("_", "-"), [value])
    return r


class ValidatorsTests(TestCase):
    def test_tags(self):
        v = Validators("h-3", WHEN + 0.75)
        self.assertEqual(v.etag("xml"), b'"h-3-x"')
        self.assertEqual(v.etag("json"), b'"h-3-j"')
        self.assertEqual(v.etag(None), b'"h-3"')
        self.assertEqual(v.lastModified(), DATE)

    def test_parseTags(self):
        self.assertIsNone(parseTags(None))
        self.assertIs(parseTags(b" * "), ANY)
        self.assertEqual(parseTags(b'"a", W/"b" ,"c,d"'), [(False, b'"a"'), (True, b'"b"'), (False, b'"c,d"')])
        self.assertIsNone(parseTags(b"unquoted"))


class NotModifiedTests(TestCase):
    v = Validators("h-1", WHEN)

    def test_ifNoneMatch(self):
        self.assertTrue(notModified(request(If_None_Match=b'"h-1-x"'), self.v, "xml"))
        self.assertTrue(notModified(request(If_None_Match=b'W/"h-1-x"'), self.v, "xml"))
        self.assertTrue(notModified(request(If_None_Match=b'"z", "h-1-x"'), self.v, "xml"))
        self.assertTrue(notModified(request(If_None_Match=b"*"), self.v, "xml"))
        self.assertFalse(notModified(request(If_None_Match=b'"h-1-x"'), self.v, "json"))
        self.assertFalse(notModified(request(If_None_Match=b"garbage"), self.v, "xml"))

    def test_ifModifiedSince(self):
        self.assertTrue(notModified(request(If_Modified_Since=DATE), self.v, "xml"))
        self.assertFalse(notModified(request(If_Modified_Since=EARLIER), self.v, "xml"))
        self.assertFalse(notModified(request(If_Modified_Since=b"yesterday"), self.v, "xml"))
        # If-None-Match, when present, decides alone.
        self.assertFalse(notModified(request(If_Modified_Since=DATE, If_None_Match=b'"other"'), self.v, "xml"))
        self.assertFalse(notModified(request(), self.v, "xml"))


class PreconditionTests(TestCase):
    v = Validators("h-1", WHEN)

    def test_ifMatch(self):
        for tag in (b'"h-1-x"', b'"h-1-j"', b'"other", "h-1-x"', b"*"):
            self.assertFalse(preconditionFailed(request(b"PUT", If_Match=tag), self.v), tag)
        for tag in (b'"h-0-x"', b'W/"h-1-x"', b"garbage"):
            self.assertTrue(preconditionFailed(request(b"PUT", If_Match=tag), self.v), tag)

    def test_gone(self):
        self.assertTrue(preconditionFailed(request(b"DELETE", If_Match=b"*"), None))
        self.assertFalse(preconditionFailed(request(b"DELETE", If_Unmodified_Since=EARLIER), None))
        self.assertFalse(preconditionFailed(request(b"DELETE"), None))

    def test_ifUnmodifiedSince(self):
        self.assertFalse(preconditionFailed(request(b"PUT", If_Unmodified_Since=DATE), self.v))
        self.assertTrue(preconditionFailed(request(b"PUT", If_Unmodified_Since=EARLIER), self.v))
        self.assertFalse(preconditionFailed(request(b"PUT", If_Unmodified_Since=b"never"), self.v))
        # If-Match, when present, decides alone.
        self.assertFalse(preconditionFailed(request(b"PUT", If_Match=b'"h-1-x"', If_Unmodified_Since=EARLIER), self.v))


class URITests(TestCase):
    def test_baseFromHost(self):
        self.assertEqual(baseURI(request(Host=b"example.com:8080")), "http://example.com:8080")
        self.assertEqual(baseURI(request(Host=b"[::1]:80")), "http://[::1]:80")

    def test_badHostFallsBackToListeningAddress(self):
        r = request(Host=b'a"b')
        r.getHost = lambda: IPv4Address("TCP", "10.0.0.1", 81)
        self.assertEqual(baseURI(r), "http://10.0.0.1:81")
        r = request()
        r.getHost = lambda: IPv6Address("TCP", "::1", 82)
        self.assertEqual(baseURI(r), "http://[::1]:82")

    def test_secure(self):
        r = request(Host=b"h")
        r.isSecure = lambda: True
        self.assertEqual(baseURI(r), "https://h")

    def test_parseReference(self):
        cases = {
            "http://x:1/restms/feed/news": ("feed", "news"),
            "/restms/feed/news": ("feed", "news"),
            "/restms/feed/": ("feed", "default"),
            "/restms/feed": ("feed", "default"),
            "news": ("feed", "news"),
            "/restms/resource/abc": ("resource", "abc"),
            "https://x/restms/resource/abc/": ("resource", "abc"),
            "/restms/resource/": None,
            "/restms/resource/a/b": None,
            "/restms/domain/": ("domain", "default"),
            "/restms/domain/apps/chat": ("domain", "apps/chat"),
            "/other/feed/x": None,
            "a/b": None,
            "": None,
        }
        for text, expected in cases.items():
            reference = parseReference(text)
            self.assertEqual(None if reference is None else (reference.kind, reference.name), expected, text)
        self.assertEqual(parseReference(" news "), Reference("feed", "news", " news "))

    def test_domainPath(self):
        self.assertEqual(domainPath("apps/chat room"), "/restms/domain/apps/chat%20room")
