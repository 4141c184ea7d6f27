"""
Tests for L{rocketd.restms.app}: the RestMS face over the embedded engine,
driven through HTTP with L{treq.testing.StubTreq} on a L{Clock}.

Streams and disconnects need the raw connection: those tests feed HTTP
bytes to a L{Site} over a L{StringTransport} (L{RawConnection}).
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlsplit

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from rocketd.engine.memory import MemoryEngine
from rocketd.http.guard import GuardedSite
from rocketd.http.sse import Heartbeat
from rocketd.restms import documents
from rocketd.restms.app import RestMSApp
from rocketd.restms.codec import parseDocument

from .support import exchange, parseResponse

HOST = "example.com:8080"
BASE = "http://" + HOST
XML = "application/restms+xml"
JSON = "application/restms+json"
NS = "http://www.imatix.com/schema/restms"
LONG_POLL = 30.0
HEARTBEAT = 15.0


def restms(inner: str) -> bytes:
    """An XML RestMS document holding C{inner}."""
    return ('<?xml version="1.0"?><restms xmlns="%s">%s</restms>' % (NS, inner)).encode("utf-8")


class Response:
    """A response read to the end: status, headers (last value, by lower-case name) and body."""

    def __init__(self, code, headers, body):
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def text(self):
        return self.body.decode("utf-8")

    def document(self):
        kind = "json" if (self.header("content-type") or "").startswith(JSON) else "xml"
        return parseDocument(self.body, kind)

    def __repr__(self):
        return "<Response %d %r>" % (self.code, self.body[:200])


def path(uri: str) -> str:
    """The path of an absolute URI the server wrote (the test client talks paths)."""
    return urlsplit(uri).path


def asyncletOf(pipeDocument) -> str:
    """The href of the one asynclet in a pipe document."""
    pipe = pipeDocument.find("pipe")
    asynclets = [m for m in pipe.findAll("message") if m.get("async") == "1"]
    assert len(asynclets) == 1, asynclets
    return asynclets[0].get("href")


def heldOf(pipeDocument):
    """The held message elements of a pipe document, in order."""
    return [m for m in pipeDocument.find("pipe").findAll("message") if m.get("async") is None]


class RestMSTestCase(TestCase):
    """An engine with its default domain, the app mounted at /restms, and a client."""

    #: The engine's settings (keyword arguments of L{MemoryEngine}).
    engineSettings: dict = {}

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.engine = MemoryEngine(self.clock, **self.engineSettings)
        self.successResultOf(self.engine.createDomain("default", "Default domain"))
        self.app = RestMSApp(self.engine, self.clock, longPoll=LONG_POLL, heartbeat=Heartbeat(self.clock, HEARTBEAT))
        self.root = Resource()
        self.root.putChild(b"restms", self.app.resource())
        self.client = StubTreq(self.root)

    # -- requests --

    def start(self, method, uri, body=None, headers=None):
        """Send a request; return the Deferred of its L{Response}."""
        if not uri.startswith("http"):
            uri = BASE + uri
        d = self.client.request(method, uri, data=body, headers=headers or {})

        def read(response):
            headers = {k.decode().lower(): v[-1].decode("latin-1") for k, v in response.headers.getAllRawHeaders()}
            return self.client.content(response).addCallback(lambda body: Response(response.code, headers, body))

        return d.addCallback(read)

    def request(self, method, uri, body=None, headers=None, **kw):
        """Send a request that the server answers at once; return its L{Response}."""
        return self.successResultOf(self.start(method, uri, body, headers, **kw))

    def get(self, uri, **headers):
        return self.request("GET", uri, headers=headers)

    def post(self, uri, body, contentType=XML, **headers):
        return self.request("POST", uri, body, dict(headers, **{"Content-Type": contentType}))

    def put(self, uri, body, contentType=XML, **headers):
        return self.request("PUT", uri, body, dict(headers, **{"Content-Type": contentType}))

    def delete(self, uri, **headers):
        return self.request("DELETE", uri, headers=headers)

    # -- fixtures --

    def createFeed(self, name=None, type="topic", **headers):
        attrs = ' type="%s"' % type
        if name is not None:
            attrs += ' name="%s"' % name
        response = self.post("/restms/domain/", restms("<feed%s/>" % attrs), **headers)
        self.assertIn(response.code, (200, 201), response)
        return response

    def createPipe(self, type="fifo"):
        """Create a pipe; return its URI and its document."""
        response = self.post("/restms/domain/", restms('<pipe type="%s"/>' % type))
        self.assertEqual(response.code, 201, response)
        return response.header("location"), response.document()

    def join(self, pipe, feed, address="*", headers=""):
        response = self.post(pipe, restms('<join address="%s" feed="%s">%s</join>' % (address, feed, headers)))
        self.assertIn(response.code, (200, 201), response)
        return response

    def publish(self, feed, messages):
        response = self.post(feed, restms(messages))
        self.assertEqual(response.code, 200, response)
        return response

    def assertError(self, response, code, fragment=None):
        """An error answer: the status, a text/plain sentence (containing C{fragment})."""
        self.assertEqual(response.code, code, response)
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        self.assertTrue(response.text.strip(), "an error needs a sentence")
        self.assertNotIn("\n", response.text.strip(), "one sentence, on one line")
        if fragment is not None:
            self.assertIn(fragment, response.text)


class RawConnection:
    """
    One HTTP/1.1 connection to a L{Site} over a L{StringTransport}: for
    long responses, flow control and clients that go away.
    """

    def __init__(self, resource, clock):
        site = Site(resource, reactor=clock)
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.channel.makeConnection(self.transport)

    def send(self, method, uri, headers=(), body=b""):
        lines = ["%s %s HTTP/1.1" % (method, uri), "Host: " + HOST]
        lines.extend("%s: %s" % pair for pair in headers)
        if body:
            lines.append("Content-Length: %d" % len(body))
        self.channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def head(self):
        """The status and headers received so far (None before the head)."""
        raw = self.transport.value()
        if b"\r\n\r\n" not in raw:
            return None
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(head[0].split(" ")[1]), headers

    def body(self):
        """The body received so far, de-chunked (complete chunks only)."""
        raw = self.transport.value().split(b"\r\n\r\n", 1)[1]
        if "chunked" not in self.head()[1].get("transfer-encoding", ""):
            return raw
        out = []
        while raw:
            line, sep, rest = raw.partition(b"\r\n")
            if not sep:
                break
            size = int(line, 16)
            if size == 0 or len(rest) < size + 2:
                break
            out.append(rest[:size])
            raw = rest[size + 2 :]
        return b"".join(out)

    def disconnect(self):
        self.transport.disconnecting = True
        self.channel.connectionLost(Failure(ConnectionDone("client went away")))


class DomainTests(RestMSTestCase):
    """The default domain and named domains: GET, POST of feeds and pipes, 403s."""

    def test_defaultDomainPaths(self):
        """/restms/domain/, /restms/domain and /restms/domain/default are the same document."""
        bodies = [self.get(uri) for uri in ("/restms/domain/", "/restms/domain", "/restms/domain/default")]
        for response in bodies:
            self.assertEqual(response.code, 200)
            self.assertEqual(response.header("content-type"), XML)
        self.assertEqual(bodies[0].body, bodies[1].body)
        self.assertEqual(bodies[0].body, bodies[2].body)
        domain = bodies[0].document().find("domain")
        self.assertEqual(domain.get("title"), "Default domain")
        self.assertEqual(domain.get("href"), BASE + "/restms/domain/default")
        feeds = domain.findAll("feed")
        self.assertEqual([(f.get("name"), f.get("type")) for f in feeds], [("default", "direct")])
        self.assertEqual(feeds[0].get("href"), BASE + "/restms/feed/default")

    def test_domainListsPublicFeedsAndPipes(self):
        self.createFeed("news")
        self.createFeed(None, "fanout")  # private: not listed
        pipe, _ = self.createPipe()
        domain = self.get("/restms/domain/").document().find("domain")
        self.assertEqual([f.get("name") for f in domain.findAll("feed")], ["default", "news"])
        self.assertEqual([p.get("href") for p in domain.findAll("pipe")], [pipe])
        self.assertEqual(domain.findAll("pipe")[0].get("type"), "fifo")

    def fromRemote(self, method, uri, body=b""):
        """Send one request from a client on another machine; return the raw response."""
        site = Site(self.root, reactor=self.clock)
        remote = IPv4Address("TCP", "192.0.2.7", 40000)
        channel = site.buildProtocol(remote)
        transport = StringTransport(hostAddress=IPv4Address("TCP", "192.0.2.1", 8080), peerAddress=remote)
        channel.makeConnection(transport)
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            method, uri, HOST, XML, len(body))
        channel.dataReceived(head.encode("latin-1") + body)
        return transport.value()

    def test_remoteClientsRefusedByDefault(self):
        """
        RestMS has no authentication: by default only clients on this
        machine may use it; others get 403 and change nothing.
        """
        response = self.fromRemote("POST", "/restms/domain/", restms('<feed name="remote" type="fanout"/>'))
        self.assertTrue(response.startswith(b"HTTP/1.1 403 "), response[:100])
        self.assertIn(b"loopback", response)
        self.assertError(self.get("/restms/feed/remote"), 404)
        self.app.anonymous = "any"
        response = self.fromRemote("POST", "/restms/domain/", restms('<feed name="remote" type="fanout"/>'))
        self.assertTrue(response.startswith(b"HTTP/1.1 201 "), response[:100])
        self.assertEqual(self.get("/restms/feed/remote").code, 200)

    def test_otherDomainsNeedTheAuthorizer(self):
        """
        Without an authorizer only the default domain is reachable; with
        one, a domain is reachable when it says so, and a domain other than
        the default lists no pipes (they are other clients' capabilities).
        """
        self.successResultOf(self.engine.createDomain("moon", "Moon"))
        moon = self.successResultOf(self.engine.getDomain("moon"))
        self.successResultOf(moon.createPipe())
        self.assertError(self.get("/restms/domain/moon"), 404, "moon")
        asked = []

        def authorize(request, name):
            asked.append(name)
            return request.getHeader(b"x-test-allow") == b"yes"

        self.app.authorizeDomain = authorize
        self.assertError(self.get("/restms/domain/moon"), 404)
        response = self.get("/restms/domain/moon", **{"X-Test-Allow": "yes"})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.document().find("domain").findAll("pipe"), [])
        self.assertEqual(asked, ["moon", "moon"])
        # The default domain never asks.
        self.assertEqual(self.get("/restms/domain/").code, 200)
        self.assertEqual(asked, ["moon", "moon"])

    def test_namedDomainWithSlashes(self):
        self.app.authorizeDomain = lambda request, name: True
        self.successResultOf(self.engine.createDomain("apps/chat", "Chat"))
        response = self.get("/restms/domain/apps/chat")
        self.assertEqual(response.code, 200)
        domain = response.document().find("domain")
        self.assertEqual(domain.get("name"), "apps/chat")
        self.assertEqual(domain.get("href"), BASE + "/restms/domain/apps/chat")
        # A feed created there is reached by its hash, not /restms/feed/.
        created = self.post("/restms/domain/apps/chat", restms('<feed name="room" type="fanout"/>'))
        self.assertEqual(created.code, 201)
        self.assertIn("/restms/resource/", created.header("location"))
        self.assertEqual(self.get(created.header("location")).document().find("feed").get("name"), "room")
        self.assertError(self.get("/restms/feed/room"), 404, "room")

    def test_unknownDomain(self):
        self.assertError(self.get("/restms/domain/nosuch"), 404)
        self.assertError(self.post("/restms/domain/nosuch", restms("<pipe/>")), 404)
        self.assertError(self.delete("/restms/domain/nosuch"), 404)

    def test_domainPutDelete403(self):
        self.assertError(self.put("/restms/domain/", restms('<domain title="x"/>')), 403)
        self.assertError(self.delete("/restms/domain/"), 403)
        self.assertEqual(self.get("/restms/domain/").code, 200)

    def test_createPublicFeedWithSlug(self):
        response = self.post("/restms/domain/", restms('<feed type="fanout" title="T"/>'), Slug="news")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.header("location"), BASE + "/restms/feed/news")
        feed = response.document().find("feed")
        self.assertEqual((feed.get("name"), feed.get("type"), feed.get("title")), ("news", "fanout", "T"))
        self.assertEqual(feed.get("href"), BASE + "/restms/feed/news")
        self.assertTrue(response.header("etag"))

    def test_createPublicFeedWithNameAttribute(self):
        response = self.post("/restms/domain/", restms('<feed name="news" type="direct"/>'))
        self.assertEqual(response.code, 201)
        self.assertEqual(response.header("location"), BASE + "/restms/feed/news")

    def test_createExistingFeedIsIdempotent(self):
        first = self.createFeed("news", "topic")
        again = self.post("/restms/domain/", restms('<feed name="news" type="topic"/>'))
        self.assertEqual(again.code, 200)
        self.assertEqual(again.header("location"), first.header("location"))
        self.assertEqual(again.document().find("feed").get("type"), "topic")

    def test_createExistingFeedWithoutType(self):
        """
        A client that names no type asked for nothing that conflicts: the
        existing feed comes back (200, Location, its document), whatever
        its type.
        """
        first = self.createFeed("news", "fanout")
        for body, headers in (
            (restms('<feed name="news"/>'), {}),
            (restms('<feed name="news" type=""/>'), {}),
            (restms("<feed/>"), {"Slug": "news"}),
            (b"", {"Slug": "news"}),
        ):
            again = self.post("/restms/domain/", body, **headers)
            self.assertEqual(again.code, 200, body)
            self.assertEqual(again.header("location"), first.header("location"))
            self.assertEqual(again.document().find("feed").get("type"), "fanout")
        again = self.post(
            "/restms/domain/", json.dumps({"restms": {"feed": [{"name": "news"}]}}).encode(), JSON, Accept=JSON
        )
        self.assertEqual(again.code, 200)
        self.assertEqual(json.loads(again.body)["restms"]["feed"][0]["type"], "fanout")
        self.assertEqual(self.post("/restms/domain/", restms('<feed name="fresh"/>')).code, 201)
        self.assertEqual(self.get("/restms/feed/fresh").document().find("feed").get("type"), "topic")

    def test_createFeedConflict(self):
        self.createFeed("news", "topic")
        self.assertError(self.post("/restms/domain/", restms('<feed name="news" type="fanout"/>')), 409)
        self.assertEqual(self.get("/restms/feed/news").document().find("feed").get("type"), "topic")

    def test_defaultFeedTypeIsTopic(self):
        response = self.post("/restms/domain/", restms("<feed/>"), Slug="t")
        self.assertEqual(response.document().find("feed").get("type"), "topic")

    def test_slugAndNameDiffer(self):
        self.assertError(self.post("/restms/domain/", restms('<feed name="a"/>'), Slug="b"), 400)

    def test_invalidFeedNames(self):
        for name in ("amq.direct", "bad name", "x" * 129, "caf\u00e9"):
            self.assertError(self.post("/restms/domain/", restms('<feed name="%s"/>' % name)), 400)

    def test_unknownTypes(self):
        self.assertError(self.post("/restms/domain/", restms('<feed name="a" type="bogus"/>')), 400, "bogus")
        self.assertError(self.post("/restms/domain/", restms('<pipe type="bogus"/>')), 400, "bogus")

    def test_createPrivateFeed(self):
        response = self.post("/restms/domain/", restms('<feed type="fanout"/>'))
        self.assertEqual(response.code, 201)
        location = response.header("location")
        self.assertTrue(location.startswith(BASE + "/restms/resource/"))
        feed = self.get(location).document().find("feed")
        self.assertIsNone(feed.get("name"))
        self.assertEqual(feed.get("href"), location)

    def test_createPipe(self):
        """A new pipe: fifo by default, its default join onto the default feed, one asynclet."""
        location, doc = self.createPipe()
        self.assertTrue(location.startswith(BASE + "/restms/resource/"))
        pipe = doc.find("pipe")
        self.assertEqual(pipe.get("type"), "fifo")
        self.assertEqual(pipe.get("href"), location)
        self.assertEqual(pipe.get("name"), location.rsplit("/", 1)[1])
        joins = pipe.findAll("join")
        self.assertEqual(len(joins), 1)
        self.assertEqual(joins[0].get("address"), pipe.get("name"))
        self.assertEqual(joins[0].get("feed"), BASE + "/restms/feed/default")
        self.assertTrue(asyncletOf(doc).startswith(BASE + "/restms/resource/"))
        self.assertEqual(heldOf(doc), [])

    def test_shortFormPost(self):
        """No document: a Slug gives a public topic feed, none a fifo pipe."""
        feed = self.request("POST", "/restms/domain/", headers={"Slug": "short"})
        self.assertEqual(feed.code, 201)
        self.assertEqual(feed.document().find("feed").get("type"), "topic")
        pipe = self.request("POST", "/restms/domain/")
        self.assertEqual(pipe.code, 201)
        self.assertEqual(pipe.document().find("pipe").get("type"), "fifo")

    def test_documentWithoutFeedOrPipe(self):
        self.assertError(self.post("/restms/domain/", restms('<join address="x"/>')), 400)

    def test_unreadableContentType415(self):
        self.assertError(self.post("/restms/domain/", b"<restms><pipe/></restms>", "text/plain"), 415)
        self.assertError(self.post("/restms/domain/", b"pipe", "application/octet-stream"), 415)

    def test_malformedXML(self):
        self.assertError(self.post("/restms/domain/", b"<restms><pipe></restms>"), 400)
        self.assertError(self.post("/restms/domain/", b"not xml at all"), 400)

    def test_doctypeAndEntityBomb(self):
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            b'<restms><feed name="&lol3;"/></restms>'
        )
        self.assertError(self.post("/restms/domain/", bomb), 400, "DOCTYPE")
        external = (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<restms><feed name="&x;"/></restms>'
        )
        self.assertError(self.post("/restms/domain/", external), 400)
        feeds = self.get("/restms/domain/").document().find("domain").findAll("feed")
        self.assertEqual([f.get("name") for f in feeds], ["default"])

    def test_wrongRoot(self):
        self.assertError(self.post("/restms/domain/", b'<feed name="x"/>'), 400, "restms")
        self.assertError(self.post("/restms/domain/", b'{"feed": {"name": "x"}}', JSON), 400)

    def test_jsonRoundTrip(self):
        body = json.dumps({"restms": {"feed": [{"name": "jfeed", "type": "fanout", "title": "J"}]}}).encode()
        response = self.post("/restms/domain/", body, JSON, Accept=JSON)
        self.assertEqual(response.code, 201)
        self.assertEqual(response.header("content-type"), JSON)
        self.assertTrue(response.header("etag").endswith('-j"'))
        data = json.loads(response.body)
        self.assertEqual(
            data["restms"]["feed"][0],
            {"name": "jfeed", "type": "fanout", "title": "J", "license": "", "href": BASE + "/restms/feed/jfeed", "dropped": "0"},
        )
        created = self.post("/restms/domain/", b'{"restms": {"pipe": {"type": "fifo"}}}', JSON, Accept=JSON)
        pipe = json.loads(created.body)
        self.assertEqual(pipe["restms"]["pipe"][0]["type"], "fifo")
        self.assertEqual(len(pipe["restms"]["pipe"][0]["join"]), 1)

    def test_notAcceptable(self):
        self.assertError(self.get("/restms/domain/", Accept="text/html"), 406)
        # 406 comes before anything is created.
        self.assertError(self.post("/restms/domain/", restms('<feed name="n406"/>'), Accept="image/png"), 406)
        self.assertError(self.get("/restms/feed/n406"), 404)

    def test_acceptedTypes(self):
        for accept, kind in (
            ("application/restms+xml", XML),
            ("text/xml", XML),
            ("application/xml", XML),
            ("*/*", XML),
            ("application/json", JSON),
            ("application/restms+json", JSON),
        ):
            self.assertEqual(self.get("/restms/domain/", Accept=accept).header("content-type"), kind, accept)

    def test_uriFollowsHostHeader(self):
        headers = {"Content-Type": XML, "Host": "rocket.test:9999"}
        response = self.request("POST", "/restms/domain/", restms("<pipe/>"), headers)
        self.assertTrue(response.header("location").startswith("http://rocket.test:9999/restms/resource/"))
        # A Host header that can't be a host is not echoed.
        response = self.request("POST", "/restms/domain/", restms("<pipe/>"), {"Content-Type": XML, "Host": 'evil"<x>'})
        self.assertTrue(response.header("location").startswith("http://127.0.0.1:8080/restms/resource/"))

    def test_hotRoutesNeverEchoANameThatIsNoName(self):
        """
        /restms/resource/HASH and /restms/feed/NAME (routed without Klein)
        write URIs from the listening address when the Host is a name
        that is not one (an empty label, a label of 64 characters).
        """
        self.createFeed("news")
        pipe, _ = self.createPipe()
        for bad in ("a..b", "a" * 64, "x" * 64 + ".example:80"):
            for uri in (pipe, "/restms/feed/news"):
                response = self.request("GET", path(uri), headers={"Host": bad})
                self.assertEqual(response.code, 200, (bad, uri))
                self.assertNotIn(bad.encode(), response.body)
                self.assertIn(b"http://127.0.0.1:8080/restms/", response.body)

    def test_domainETagCoversFeedTitles(self):
        """Changing a listed feed's title changes the domain's ETag."""
        self.createFeed("news")
        before = self.get("/restms/domain/").header("etag")
        self.put("/restms/feed/news", restms('<feed title="New title"/>'))
        after = self.get("/restms/domain/")
        self.assertNotEqual(after.header("etag"), before)
        self.assertEqual(self.get("/restms/domain/", **{"If-None-Match": before}).code, 200)


class BadHostTests(RestMSTestCase):
    """
    A Host that is no host (werkzeug refuses what does not encode as IDNA)
    on every route family, through the listeners' L{GuardedSite}: never a
    5xx, never HTML, and the listening address in every URI.
    """

    def send(self, method, uri, host, body=b"", contentType=XML, failing=False):
        site = GuardedSite(self.root, maxBody=1 << 20, reactor=self.clock)
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            method, uri, host, contentType.encode(), len(body))
        status, headers, body, _ = parseResponse(exchange(site, head + body))
        if not failing:
            self.assertLess(status, 500, (method, uri, host, body))
        self.assertNotIn(b"html", headers.get(b"content-type", b""))
        self.assertNotIn(host, body)
        return status, headers, body

    def test_everyRouteFamily(self):
        self.createFeed("news")
        pipe, _ = self.createPipe()
        pipe = path(pipe).encode()
        for bad in (b"a..b", b"a" * 64, b"x" * 64 + b".example", b"\xc3\xa9..", b"[zz]"):
            # Through Klein: the root, unknown paths, domains.
            self.assertEqual(self.send(b"GET", b"/restms/", bad)[0], 404)
            self.assertEqual(self.send(b"GET", b"/restms/no/such/thing", bad)[0], 404)
            status, _, body = self.send(b"GET", b"/restms/domain/", bad)
            self.assertEqual(status, 200)
            self.assertIn(b'href="http://127.0.0.1:8080/restms/domain/default"', body)
            status, headers, _ = self.send(b"POST", b"/restms/domain/", bad, restms("<pipe/>"))
            self.assertEqual(status, 201)
            self.assertTrue(headers[b"location"].startswith(b"http://127.0.0.1:8080/restms/resource/"))
            # The hot routes.
            status, _, body = self.send(b"GET", pipe, bad)
            self.assertEqual(status, 200)
            self.assertIn(b"http://127.0.0.1:8080/restms/", body)
            self.assertEqual(self.send(b"GET", b"/restms/feed/news", bad)[0], 200)
            self.assertEqual(self.send(b"POST", b"/restms/feed/news", bad, restms('<message address="a"/>'))[0], 200)

    def test_lastResortIsPlainText(self):
        """An exception no handler catches is a RestMS error: a text/plain sentence, logged once."""

        def broken(*args, **kwargs):
            raise ZeroDivisionError()

        self.patch(self.app, "_serve", broken)
        for uri in (b"/restms/domain/", b"/restms/feed/news"):
            status, headers, body = self.send(b"GET", uri, b"rocket.test", failing=True)
            self.assertEqual(status, 500)
            self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
            self.assertEqual(body.count(b"\n"), 1)
            self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class DroppedTests(RestMSTestCase):
    """The pipe's and the feed's documents say how many messages their limits dropped."""

    engineSettings = {"pipeDepth": 2, "feedBacklog": 1}

    def test_pipe(self):
        pipe, document = self.createPipe()
        self.assertEqual(document.find("pipe").get("dropped"), "0")
        self.publish("/restms/feed/default", "".join('<message address="%s"/>' % path(pipe).rsplit("/", 1)[1] for _ in range(5)))
        xml = self.get(path(pipe))
        self.assertEqual(xml.document().find("pipe").get("dropped"), "3")
        self.assertEqual(len(heldOf(xml.document())), 2)
        self.assertIn(b'dropped="3"', xml.body)
        data = json.loads(self.get(path(pipe), Accept=JSON).body)
        self.assertEqual(data["restms"]["pipe"][0]["dropped"], "3")

    def test_feed(self):
        """A rotator's backlog drops show on its document, and change its ETag."""
        self.createFeed("work", "rotator")
        document = self.get("/restms/feed/work")
        self.assertEqual(document.document().find("feed").get("dropped"), "0")
        self.publish("/restms/feed/work", '<message address="a"/><message address="b"/><message address="c"/>')
        xml = self.get("/restms/feed/work")
        self.assertEqual(xml.document().find("feed").get("dropped"), "2")
        self.assertNotEqual(xml.header("etag"), document.header("etag"))
        self.assertEqual(self.get("/restms/feed/work", **{"If-None-Match": document.header("etag")}).code, 200)
        data = json.loads(self.get("/restms/feed/work", Accept=JSON).body)
        self.assertEqual(data["restms"]["feed"][0]["dropped"], "2")
        # The domain lists its feeds with the count too.
        feeds = self.get("/restms/domain/").document().find("domain").findAll("feed")
        self.assertEqual({f.get("name"): f.get("dropped") for f in feeds}, {"default": "0", "work": "2"})


class FeedTests(RestMSTestCase):
    """Public, default and private feeds: GET, PUT, DELETE."""

    def test_defaultFeedPaths(self):
        for uri in ("/restms/feed/", "/restms/feed", "/restms/feed/default"):
            response = self.get(uri)
            self.assertEqual(response.code, 200, uri)
            feed = response.document().find("feed")
            self.assertEqual((feed.get("name"), feed.get("type")), ("default", "direct"))

    def test_getFeed(self):
        self.createFeed("news", "topic")
        response = self.get("/restms/feed/news")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.document().find("feed").get("type"), "topic")
        self.assertTrue(response.header("last-modified").endswith("GMT"))

    def test_unknownFeed(self):
        self.assertError(self.get("/restms/feed/nosuch"), 404, "nosuch")
        self.assertError(self.post("/restms/feed/nosuch", restms('<message address="a"/>')), 404)

    def test_putTitleAndLicense(self):
        self.createFeed("news")
        response = self.put("/restms/feed/news", restms('<feed name="news" type="topic" title="Daily" license="CC"/>'))
        self.assertEqual(response.code, 200)
        feed = self.get("/restms/feed/news").document().find("feed")
        self.assertEqual((feed.get("title"), feed.get("license")), ("Daily", "CC"))

    def test_putCantChangeNameOrType(self):
        self.createFeed("news", "topic")
        self.assertError(self.put("/restms/feed/news", restms('<feed name="other" title="x"/>')), 400)
        self.assertError(self.put("/restms/feed/news", restms('<feed type="fanout" title="x"/>')), 400)
        self.assertEqual(self.get("/restms/feed/news").document().find("feed").get("title"), "")

    def test_putNeedsAFeedDocument(self):
        self.createFeed("news")
        self.assertError(self.put("/restms/feed/news", restms("<pipe/>")), 400)
        self.assertError(self.put("/restms/feed/news", b"title", "text/plain"), 415)
        self.assertError(self.put("/restms/feed/news", b""), 400)

    def test_defaultFeedIsReadOnly(self):
        self.assertError(self.put("/restms/feed/", restms('<feed title="x"/>')), 403)
        self.assertError(self.delete("/restms/feed/"), 403)
        self.assertError(self.delete("/restms/feed/default"), 403)
        self.assertEqual(self.get("/restms/feed/").code, 200)

    def test_deleteFeed(self):
        """DELETE removes the feed and its joins; the pipes stay; a second DELETE is 200."""
        self.createFeed("news", "fanout")
        pipe, _ = self.createPipe()
        join = self.join(pipe, "/restms/feed/news").header("location")
        response = self.delete("/restms/feed/news")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertError(self.get("/restms/feed/news"), 404)
        self.assertError(self.get(join), 404)
        self.assertEqual(len(self.get(pipe).document().find("pipe").findAll("join")), 1)
        self.assertEqual(self.delete("/restms/feed/news").code, 200)

    def test_deleteGoneWithIfMatch(self):
        self.assertError(self.request("DELETE", "/restms/feed/gone", headers={"If-Match": '"x"'}), 412)
        self.assertError(self.request("DELETE", "/restms/resource/gone", headers={"If-Match": "*"}), 412)
        self.assertEqual(self.delete("/restms/resource/gone").code, 200)

    def test_privateFeedByHash(self):
        location = self.createFeed(None, "fanout").header("location")
        pipe, _ = self.createPipe()
        self.join(pipe, location)
        self.publish(path(location), '<message address="x"/>')
        self.assertEqual(len(heldOf(self.get(pipe).document())), 1)
        self.assertEqual(self.delete(location).code, 200)
        self.assertError(self.get(location), 404)

    def test_systemFeedRefusesPosts(self):
        self.createFeed("events", "system")
        self.assertError(self.post("/restms/feed/events", restms('<message address="x"/>')), 403)

    def test_systemFeedReportsLifecycle(self):
        """Pipes joined to a system feed see resource lifecycle events."""
        self.createFeed("events", "system")
        pipe, _ = self.createPipe()
        self.join(pipe, "/restms/feed/events", "#")
        self.createPipe()
        addresses = [m.get("address") for m in heldOf(self.get(pipe).document())]
        self.assertIn("pipe.created", addresses)

    def test_otherMethods403(self):
        self.createFeed("news")
        for method in ("PATCH", "OPTIONS"):
            self.assertError(self.request(method, "/restms/feed/news"), 403)


class JoinTests(RestMSTestCase):
    """Joins: created by POST to a pipe, GET, DELETE."""

    def setUp(self):
        RestMSTestCase.setUp(self)
        self.createFeed("news", "topic")
        self.pipe, _ = self.createPipe()

    def test_createJoin(self):
        response = self.join(self.pipe, "/restms/feed/news", "rec.*")
        self.assertEqual(response.code, 201)
        location = response.header("location")
        self.assertTrue(location.startswith(BASE + "/restms/resource/"))
        join = response.document().find("join")
        self.assertEqual(join.get("href"), location)
        self.assertEqual(join.get("address"), "rec.*")
        self.assertEqual(join.get("feed"), BASE + "/restms/feed/news")
        self.assertEqual(self.get(location).document().find("join").get("address"), "rec.*")
        self.assertEqual(len(self.get(self.pipe).document().find("pipe").findAll("join")), 2)

    def test_identicalJoinIs200(self):
        first = self.join(self.pipe, "/restms/feed/news", "a.b")
        again = self.join(self.pipe, BASE + "/restms/feed/news", "a.b")
        self.assertEqual(again.code, 200)
        self.assertEqual(again.header("location"), first.header("location"))

    def test_feedReferences(self):
        """A feed may be named by absolute URI, path, bare name or private URI."""
        self.assertEqual(self.join(self.pipe, "http://elsewhere:1/restms/feed/news", "x").code, 201)
        self.assertEqual(self.join(self.pipe, "news", "y").code, 201)
        private = self.createFeed(None, "fanout").header("location")
        self.assertEqual(self.join(self.pipe, private).code, 201)
        self.assertEqual(self.join(self.pipe, path(private), "z").code, 201)

    def test_unknownFeed400(self):
        """
        A join onto a feed that does not exist is 400, naming the feed: the
        document is wrong, the pipe is there (a 404 would say it is gone).
        """
        for feed in ("/restms/feed/nosuch", "/restms/resource/nosuch", BASE + "/restms/feed/nosuch", "nosuch"):
            response = self.post(self.pipe, restms('<join address="*" feed="%s"/>' % feed))
            self.assertError(response, 400, "feed %s," % feed)
        self.assertEqual(self.get(self.pipe).code, 200)
        self.assertEqual(len(self.get(self.pipe).document().find("pipe").findAll("join")), 1)

    def test_engineUnavailable503(self):
        """
        While the engine can't answer (its broker is away), a request gets
        503 with the engine's sentence and C{Retry-After}, on a Klein route
        and on a hot route alike.
        """
        from twisted.internet.defer import fail

        from rocketd.errors import EngineUnavailable

        self.patch(self.engine, "lookup", lambda hash: fail(EngineUnavailable(retryAfter=7)))
        self.patch(self.engine, "getDomain", lambda name: fail(EngineUnavailable(retryAfter=7)))
        for response in (self.get("/restms/domain/"), self.get("/restms/resource/somehash")):
            self.assertError(response, 503, "retry later")
            self.assertEqual(response.header("retry-after"), "7")

    def test_notAFeed400(self):
        self.assertError(self.post(self.pipe, restms('<join address="*" feed="%s"/>' % self.pipe)), 400, "not a feed")
        self.assertError(self.post(self.pipe, restms('<join address="*" feed="/restms/domain/"/>')), 400)
        self.assertError(self.post(self.pipe, restms('<join address="*" feed="/elsewhere/x"/>')), 400)
        self.assertError(self.post(self.pipe, restms('<join address="*"/>')), 400, "feed")
        self.assertError(self.post(self.pipe, restms("<feed/>")), 400)

    def test_joinOntoDefaultFeed403(self):
        for feed in ("/restms/feed/", "/restms/feed/default", BASE + "/restms/feed/default"):
            self.assertError(self.post(self.pipe, restms('<join address="x" feed="%s"/>' % feed)), 403)

    def test_deleteJoin(self):
        location = self.join(self.pipe, "/restms/feed/news", "a").header("location")
        self.assertEqual(self.delete(location).code, 200)
        self.assertError(self.get(location), 404)
        self.assertEqual(self.delete(location).code, 200)
        self.publish("/restms/feed/news", '<message address="a"/>')
        self.assertEqual(heldOf(self.get(self.pipe).document()), [])

    def test_deleteDefaultJoin403(self):
        default = self.get(self.pipe).document().find("pipe").findAll("join")[0].get("href")
        self.assertError(self.delete(default), 403)
        self.assertEqual(self.get(default).code, 200)

    def test_joinPutPost403(self):
        location = self.join(self.pipe, "/restms/feed/news", "a").header("location")
        self.assertError(self.put(location, restms('<join address="b"/>')), 403)
        self.assertError(self.post(location, restms('<join address="b"/>')), 403)

    def test_badTopicPattern(self):
        self.assertError(self.post(self.pipe, restms('<join address="a.b*" feed="/restms/feed/news"/>')), 400)

    def test_joinNeedsRestMSDocument(self):
        self.assertError(self.post(self.pipe, b'<join feed="news"/>', "text/plain"), 415)

    def test_headersJoin(self):
        self.createFeed("hdr", "headers")
        response = self.join(self.pipe, "/restms/feed/hdr", "*", '<header name="color" value="red"/>')
        headers = response.document().find("join").findAll("header")
        self.assertEqual([(h.get("name"), h.get("value")) for h in headers], [("color", "red")])
        self.publish(
            "/restms/feed/hdr",
            '<message address="1"><header name="color" value="blue"/></message>'
            '<message address="2"><header name="color" value="red"/><header name="size" value="L"/></message>',
        )
        self.assertEqual([m.get("address") for m in heldOf(self.get(self.pipe).document())], ["2"])

    def test_ondemandJoinsOnlyRotatorOrService(self):
        pipe, _ = self.createPipe("ondemand")
        self.assertError(self.post(pipe, restms('<join feed="/restms/feed/news"/>')), 403)
        self.createFeed("work", "rotator")
        self.assertEqual(self.join(pipe, "/restms/feed/work").code, 201)

    def test_pipePut403(self):
        self.assertError(self.put(self.pipe, restms('<pipe title="x"/>')), 403)


class MessageTests(RestMSTestCase):
    """Publishing, delivered messages, contents, staging, fifo DELETE."""

    def setUp(self):
        RestMSTestCase.setUp(self)
        self.createFeed("news", "fanout")
        self.pipe, _ = self.createPipe()
        self.join(self.pipe, "/restms/feed/news")

    def held(self):
        return heldOf(self.get(self.pipe).document())

    def test_postToFeedAnswers200Empty(self):
        response = self.post("/restms/feed/news", restms('<message address="a"/>'))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertIsNone(response.header("content-type"))

    def test_severalMessagesInOrder(self):
        self.publish("/restms/feed/news", "".join('<message address="m%d"/>' % i for i in range(5)))
        self.assertEqual([m.get("address") for m in self.held()], ["m%d" % i for i in range(5)])

    def test_messageKeepsEverything(self):
        properties = {
            "reply_to": "r",
            "message_id": "id-1",
            "correlation_id": "c",
            "delivery_mode": "2",
            "priority": "5",
            "expiration": "60000",
            "timestamp": "1234",
            "type": "t",
            "user_id": "u",
            "app_id": "app",
            "sender_id": "s",
        }
        attrs = " ".join('%s="%s"' % pair for pair in properties.items())
        self.publish(
            "/restms/feed/news",
            '<message address="a.b" %s><header name="h1" value="v1"/><header name="h2" value=""/>'
            '<content type="text/x-test">caf\u00e9 &amp; more</content></message>' % attrs,
        )
        [summary] = self.held()
        self.assertEqual(summary.get("message_id"), "id-1")
        response = self.get(summary.get("href"))
        self.assertEqual(response.code, 200)
        message = response.document().find("message")
        for name, value in properties.items():
            self.assertEqual(message.get(name), value, name)
        self.assertEqual(message.get("address"), "a.b")
        self.assertEqual(message.get("feed"), BASE + "/restms/feed/news")
        self.assertEqual(message.get("href"), summary.get("href"))
        headers = [(h.get("name"), h.get("value")) for h in message.findAll("header")]
        self.assertEqual(headers, [("h1", "v1"), ("h2", "")])
        [content] = message.findAll("content")
        body = "caf\u00e9 & more".encode("utf-8")
        self.assertEqual((content.get("type"), content.get("length")), ("text/x-test", str(len(body))))
        self.assertEqual((content.get("encoding"), content.text), ("plain", "caf\u00e9 & more"))
        raw = self.get(content.get("href"))
        self.assertEqual(raw.code, 200)
        self.assertEqual(raw.body, body)
        self.assertEqual(raw.header("content-type"), "text/x-test")
        self.assertTrue(raw.header("etag"))

    def test_base64Content(self):
        blob = bytes(range(256))
        self.publish(
            "/restms/feed/news",
            '<message address="b"><content type="image/png" encoding="base64">%s</content></message>'
            % base64.b64encode(blob).decode(),
        )
        message = self.get(self.held()[0].get("href")).document().find("message")
        content = message.find("content")
        self.assertEqual(content.get("length"), "256")
        self.assertEqual(self.get(content.get("href")).body, blob)
        # Not text XML can carry: delivered inline as base64.
        self.assertEqual(content.get("encoding"), "base64")
        self.assertEqual(base64.b64decode(content.text), blob)

    def test_largeContentsByReferenceOnly(self):
        """Contents up to INLINE_LIMIT bytes come inline as well; bigger ones only by href."""
        small, big = "s" * documents.INLINE_LIMIT, "b" * (documents.INLINE_LIMIT + 1)
        self.publish(
            "/restms/feed/news",
            "<message><content>%s</content></message><message><content>%s</content></message>" % (small, big),
        )
        contents = [self.get(m.get("href")).document().find("message").find("content") for m in self.held()]
        self.assertEqual(contents[0].text, small)
        self.assertIsNone(contents[1].text)
        self.assertIsNone(contents[1].get("encoding"))
        self.assertEqual(self.get(contents[1].get("href")).body, big.encode())

    def test_badContent(self):
        self.assertError(
            self.post("/restms/feed/news", restms('<message><content encoding="base64">!!!</content></message>')), 400
        )
        self.assertError(
            self.post("/restms/feed/news", restms('<message><content encoding="rot13">x</content></message>')), 400
        )
        self.assertError(self.post("/restms/feed/news", restms('<message><header value="x"/></message>')), 400)
        self.assertError(self.post("/restms/feed/news", restms("<pipe/>")), 400)
        self.assertEqual(self.held(), [])

    def test_stagedContent(self):
        staged = self.post("/restms/feed/news", b"\x00binary\xff", "application/x-blob")
        self.assertEqual(staged.code, 201)
        location = staged.header("location")
        self.assertTrue(location.startswith(BASE + "/restms/resource/"))
        self.assertEqual(staged.document().find("content").get("length"), "8")
        self.assertEqual(self.get(location).body, b"\x00binary\xff")
        self.publish("/restms/feed/news", '<message address="c"><content href="%s"/></message>' % path(location))
        content = self.get(self.held()[0].get("href")).document().find("message").find("content")
        self.assertEqual(content.get("type"), "application/x-blob")
        delivered = self.get(content.get("href"))
        self.assertEqual(delivered.body, b"\x00binary\xff")
        self.assertEqual(delivered.header("content-type"), "application/x-blob")
        # Published once: reusing it is 404, and nothing is published.
        self.assertError(
            self.post("/restms/feed/news", restms('<message><content href="%s"/></message>' % location)), 404
        )
        self.assertEqual(len(self.held()), 1)

    def test_contentStagedOnAnotherFeed403(self):
        self.createFeed("other", "fanout")
        location = self.post("/restms/feed/other", b"x", "text/plain").header("location")
        self.assertError(
            self.post("/restms/feed/news", restms('<message><content href="%s"/></message>' % location)), 403
        )

    def test_contentHrefMustBeAResource(self):
        self.assertError(
            self.post("/restms/feed/news", restms('<message><content href="/restms/feed/x"/></message>')), 400
        )

    def test_seedContentTypeParameter(self):
        """The seed's C{type=content} parameter marks a content; it is not part of its type."""
        location = self.post("/restms/feed/news", b"hi", "text/plain;type=content").header("location")
        self.assertEqual(self.get(location).header("content-type"), "text/plain")

    def test_fifoDeleteRemovesOlder(self):
        self.publish("/restms/feed/news", "".join('<message address="m%d"/>' % i for i in range(4)))
        held = self.held()
        response = self.delete(held[2].get("href"))
        self.assertEqual(response.code, 200)
        self.assertEqual([m.get("address") for m in self.held()], ["m3"])
        for message in held[:3]:
            self.assertError(self.get(message.get("href")), 404)
            self.assertEqual(self.delete(message.get("href")).code, 200)

    def test_getHeldMessageAgain(self):
        self.publish("/restms/feed/news", '<message address="once"/>')
        href = self.held()[0].get("href")
        self.assertEqual(self.get(href).body, self.get(href).body)

    def test_messagePutPost403(self):
        self.publish("/restms/feed/news", '<message address="a"><content>x</content></message>')
        href = self.held()[0].get("href")
        self.assertError(self.put(href, restms('<message address="b"/>')), 403)
        self.assertError(self.post(href, restms('<message address="b"/>')), 403)
        content = self.get(href).document().find("message").find("content").get("href")
        self.assertError(self.put(content, b"y", "text/plain"), 403)
        self.assertError(self.post(content, b"y", "text/plain"), 403)

    def test_deleteContentOfHeldMessage(self):
        """
        The drafts' clients GET, then DELETE, each content of a message they
        receive: the content goes, the message stays held with the rest.
        """
        other, _ = self.createPipe()
        self.join(other, "/restms/feed/news")
        self.publish(
            "/restms/feed/news",
            '<message address="a.b" message_id="m1" reply_to="r"><header name="h" value="v"/>'
            '<content type="text/plain">one</content><content type="text/x-two">two</content>'
            '<content type="text/plain">three</content></message>',
        )
        href = self.held()[0].get("href")
        before = self.get(href)
        hrefs = [c.get("href") for c in before.document().find("message").findAll("content")]
        self.assertEqual(len(hrefs), 3)
        self.assertEqual(self.get(hrefs[1]).body, b"two")
        response = self.delete(hrefs[1])
        self.assertEqual((response.code, response.body), (200, b""))
        self.assertError(self.get(hrefs[1]), 404)
        self.assertEqual([self.get(h).body for h in (hrefs[0], hrefs[2])], [b"one", b"three"])
        # Still held, with its properties, headers and other contents; the
        # document lists what is left (XML and JSON), and its tag changed.
        [summary] = self.held()
        self.assertEqual((summary.get("href"), summary.get("message_id")), (href, "m1"))
        after = self.get(href)
        self.assertNotEqual(after.header("etag"), before.header("etag"))
        self.assertEqual(self.get(href, **{"If-None-Match": before.header("etag")}).code, 200)
        message = after.document().find("message")
        self.assertEqual((message.get("address"), message.get("reply_to")), ("a.b", "r"))
        self.assertEqual([(h.get("name"), h.get("value")) for h in message.findAll("header")], [("h", "v")])
        contents = message.findAll("content")
        self.assertEqual([c.get("href") for c in contents], [hrefs[0], hrefs[2]])
        self.assertEqual([c.text for c in contents], ["one", "three"])
        data = json.loads(self.get(href, Accept=JSON).body)["restms"]["message"][0]
        self.assertEqual([(c["href"], c["$text"]) for c in data["content"]], [(hrefs[0], "one"), (hrefs[2], "three")])
        # Deleting it again is done already; If-Match on a gone content can't hold.
        self.assertEqual(self.delete(hrefs[1]).code, 200)
        self.assertError(self.delete(hrefs[1], **{"If-Match": "*"}), 412)
        # A stale If-Match leaves the content alone.
        self.assertError(self.delete(hrefs[0], **{"If-Match": '"stale"'}), 412)
        self.assertEqual(self.get(hrefs[0]).code, 200)
        # The same message in another pipe keeps every content.
        otherHref = heldOf(self.get(other).document())[0].get("href")
        self.assertEqual(len(self.get(otherHref).document().find("message").findAll("content")), 3)
        # The client deletes the rest, then the message.
        for h in (hrefs[0], hrefs[2]):
            self.assertEqual(self.delete(h).code, 200)
        message = self.get(href).document().find("message")
        self.assertEqual((message.get("message_id"), message.findAll("content")), ("m1", []))
        self.assertEqual(self.delete(href).code, 200)
        self.assertEqual(self.held(), [])

    def test_deleteStagedContent(self):
        """A staged content nobody claimed can be deleted: then it is gone, and no message can claim it."""
        location = self.post("/restms/feed/news", b"draft", "text/plain").header("location")
        response = self.delete(location)
        self.assertEqual((response.code, response.body), (200, b""))
        self.assertError(self.get(location), 404)
        self.assertEqual(self.delete(location).code, 200)
        self.assertError(
            self.post("/restms/feed/news", restms('<message><content href="%s"/></message>' % location)), 404
        )
        self.assertEqual(self.held(), [])

    def test_deletingAMessageDeletesItsContents(self):
        self.publish("/restms/feed/news", '<message address="a"><content>x</content></message>')
        href = self.held()[0].get("href")
        content = self.get(href).document().find("message").find("content").get("href")
        self.delete(href)
        self.assertError(self.get(content), 404)

    def test_linkNext(self):
        """A message carries Link rel=next: the client walks the pipe without re-reading it."""
        self.publish("/restms/feed/news", '<message address="1"/><message address="2"/>')
        first = self.held()[0].get("href")
        response = self.get(first)
        link = re.match(r'<([^>]+)>; rel="next"', response.header("link"))
        second = self.get(link.group(1))
        self.assertEqual(second.document().find("message").get("address"), "2")
        asynclet = asyncletOf(self.get(self.pipe).document())
        self.assertEqual(re.match(r"<([^>]+)>", second.header("link")).group(1), asynclet)

    def test_jsonMessages(self):
        body = {
            "restms": {
                "message": [
                    {
                        "address": "j1",
                        "header": [{"name": "k", "value": "v"}],
                        "content": [{"type": "text/plain", "$text": "hi"}],
                    },
                    {"address": "j2", "message_id": "7"},
                ]
            }
        }
        self.assertEqual(self.post("/restms/feed/news", json.dumps(body).encode(), JSON).code, 200)
        pipe = json.loads(self.get(self.pipe, Accept=JSON).body)["restms"]["pipe"][0]
        messages = pipe["message"]
        self.assertEqual([m.get("address") for m in messages[:2]], ["j1", "j2"])
        self.assertEqual(messages[2]["async"], "1")
        first = json.loads(self.get(messages[0]["href"], Accept=JSON).body)["restms"]["message"][0]
        self.assertEqual(first["header"], [{"name": "k", "value": "v"}])
        self.assertEqual((first["content"][0]["encoding"], first["content"][0]["$text"]), ("plain", "hi"))
        self.assertEqual(self.get(first["content"][0]["href"]).body, b"hi")

    def test_emptyMessageDocument400(self):
        self.assertError(self.post("/restms/feed/news", restms("")), 400)

    def test_malformedMessages400(self):
        self.assertError(self.post("/restms/feed/news", b"<restms><message></restms>"), 400)
        self.assertError(self.post("/restms/feed/news", b"{not json", JSON), 400)

    def test_encodedOncePerRepresentation(self):
        """N deliveries of one message cost one encoding per representation."""
        other, _ = self.createPipe()
        self.join(other, "/restms/feed/news")
        calls = []
        renderers = dict(documents.RENDERERS)

        def counting(kind):
            def render(element):
                if element.children and element.children[0].tag == "message":
                    calls.append(kind)
                return renderers[kind](element)

            return render

        self.patch(documents, "RENDERERS", {kind: counting(kind) for kind in renderers})
        self.publish("/restms/feed/news", '<message address="shared"><content>x</content></message>')
        bodies = []
        for pipe in (self.pipe, other, self.pipe, other):
            href = heldOf(self.get(pipe).document())[0].get("href")
            bodies.append(self.get(href).body)
            self.get(href, Accept=JSON)
        self.assertEqual(sorted(calls), ["json", "xml"])
        # Each pipe's copy names its own message and contents.
        self.assertNotEqual(bodies[0], bodies[1])
        self.assertEqual(bodies[0], bodies[2])
        for body, pipe in ((bodies[0], self.pipe), (bodies[1], other)):
            message = parseDocument(body, "xml").find("message")
            self.assertEqual(message.get("href"), heldOf(self.get(pipe).document())[0].get("href"))
            self.assertTrue(message.find("content").get("href").startswith(message.get("href")))

    def test_hrefsFollowHostPerRequest(self):
        """The cached encoding holds no host: each request gets its own in every URI."""
        self.publish("/restms/feed/news", '<message address="h"><content>x</content></message>')
        href = path(self.held()[0].get("href"))
        first = self.get(href)
        other = self.request("GET", href, headers={"Host": "other.test"})
        self.assertIn(b"http://example.com:8080/restms/", first.body)
        self.assertNotIn(b"example.com", other.body)
        message = other.document().find("message")
        for uri in (message.get("href"), message.get("feed"), message.find("content").get("href")):
            self.assertTrue(uri.startswith("http://other.test/restms/"), uri)

    def test_markerShapesAreData(self):
        """Text shaped like a URI slot, without the process's secret nonce, is data, not a slot."""
        sneaky = "@h@ @b@ @c0@"
        self.publish("/restms/feed/news", '<message address="%s" reply_to="@@h@@"/>' % sneaky)
        message = self.get(self.held()[0].get("href")).document().find("message")
        self.assertEqual(message.get("address"), sneaky)
        self.assertEqual(message.get("reply_to"), "@@h@@")


class StagingLimitTests(RestMSTestCase):
    """Staged contents no message claims: bounded per feed (507 beyond), and they expire."""

    engineSettings = {"stageTTL": 60, "stageCount": 2, "stageBytes": 10}

    def setUp(self):
        RestMSTestCase.setUp(self)
        self.createFeed("pics", "fanout")

    def stage(self, body):
        return self.post("/restms/feed/pics", body, "application/octet-stream")

    def test_countBound507(self):
        first = self.stage(b"a")
        self.assertEqual((first.code, self.stage(b"b").code), (201, 201))
        response = self.stage(b"c")
        self.assertError(response, 507, "The feed 'pics' already keeps 2 staged contents")
        self.assertIsNone(response.header("location"))
        # Another feed has its own bound.
        self.createFeed("other", "fanout")
        self.assertEqual(self.post("/restms/feed/other", b"c", "text/plain").code, 201)
        # Deleting one (or publishing it) makes room.
        self.assertEqual(self.delete(first.header("location")).code, 200)
        self.assertEqual(self.stage(b"c").code, 201)

    def test_bytesBound507(self):
        self.assertEqual(self.stage(b"123456").code, 201)
        self.assertError(self.stage(b"12345"), 507, "more than the 10 it may keep")
        self.assertEqual(self.stage(b"1234").code, 201)

    def test_unclaimedContentExpires(self):
        location = self.stage(b"old").header("location")
        self.clock.advance(30)
        young = self.stage(b"young").header("location")
        self.clock.advance(30)
        self.assertError(self.get(location), 404)
        self.assertError(
            self.post("/restms/feed/pics", restms('<message><content href="%s"/></message>' % location)), 404
        )
        self.assertEqual(self.get(young).body, b"young")
        self.clock.advance(30)
        self.assertError(self.get(young), 404)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ConditionalTests(RestMSTestCase):
    """ETag, Last-Modified, 304 and 412."""

    def setUp(self):
        RestMSTestCase.setUp(self)
        self.createFeed("news", "topic")

    def test_etagPerRepresentation(self):
        xml = self.get("/restms/feed/news")
        js = self.get("/restms/feed/news", Accept=JSON)
        self.assertRegex(xml.header("etag"), r'^"[^"]+"$')
        self.assertNotEqual(xml.header("etag"), js.header("etag"))
        self.assertEqual(xml.header("last-modified"), js.header("last-modified"))
        self.assertEqual(xml.header("vary"), "Accept")

    def test_ifNoneMatch(self):
        etag = self.get("/restms/feed/news").header("etag")
        for value in (etag, '"nope", %s' % etag, "W/" + etag, "*"):
            response = self.request("GET", "/restms/feed/news", headers={"If-None-Match": value})
            self.assertEqual(response.code, 304, value)
            self.assertEqual(response.body, b"")
            self.assertEqual(response.header("etag"), etag)
        self.assertEqual(self.request("GET", "/restms/feed/news", headers={"If-None-Match": '"nope"'}).code, 200)
        # The JSON representation has its own tag.
        both = {"If-None-Match": etag, "Accept": JSON}
        self.assertEqual(self.request("GET", "/restms/feed/news", headers=both).code, 200)

    def test_ifModifiedSince(self):
        lastModified = self.get("/restms/feed/news").header("last-modified")
        self.assertEqual(self.get("/restms/feed/news", **{"If-Modified-Since": lastModified}).code, 304)
        old = "Thu, 01 Jan 1970 00:00:00 GMT"
        self.assertEqual(self.request("GET", "/restms/feed/news", headers={"If-Modified-Since": old}).code, 200)
        self.assertEqual(self.request("GET", "/restms/feed/news", headers={"If-Modified-Since": "garbage"}).code, 200)
        # If-None-Match wins over If-Modified-Since.
        both = {"If-Modified-Since": lastModified, "If-None-Match": '"other"'}
        self.assertEqual(self.request("GET", "/restms/feed/news", headers=both).code, 200)

    def test_etagChangesWithTheResource(self):
        before = self.get("/restms/feed/news").header("etag")
        self.clock.advance(10)
        self.put("/restms/feed/news", restms('<feed title="changed"/>'))
        response = self.request("GET", "/restms/feed/news", headers={"If-None-Match": before})
        self.assertEqual(response.code, 200)
        self.assertNotEqual(response.header("etag"), before)

    def test_conditionalPut(self):
        xmlTag = self.get("/restms/feed/news").header("etag")
        jsonTag = self.get("/restms/feed/news", Accept=JSON).header("etag")
        doc = restms('<feed title="one"/>')
        self.assertError(self.put("/restms/feed/news", doc, **{"If-Match": '"stale"'}), 412)
        self.assertError(self.put("/restms/feed/news", doc, **{"If-Match": "W/" + xmlTag}), 412)
        self.assertEqual(self.get("/restms/feed/news").document().find("feed").get("title"), "")
        self.assertEqual(self.put("/restms/feed/news", doc, **{"If-Match": xmlTag}).code, 200)
        # The tag is stale now, whichever representation it came from.
        self.assertError(self.put("/restms/feed/news", restms('<feed title="two"/>'), **{"If-Match": jsonTag}), 412)
        fresh = self.get("/restms/feed/news", Accept=JSON).header("etag")
        self.assertEqual(self.put("/restms/feed/news", restms('<feed title="two"/>'), **{"If-Match": fresh}).code, 200)
        self.assertEqual(self.put("/restms/feed/news", restms('<feed title="3"/>'), **{"If-Match": "*"}).code, 200)

    def test_ifUnmodifiedSince(self):
        lastModified = self.get("/restms/feed/news").header("last-modified")
        self.clock.advance(5)
        self.put("/restms/feed/news", restms('<feed title="later"/>'))
        doc = restms('<feed title="lost update"/>')
        self.assertError(self.put("/restms/feed/news", doc, **{"If-Unmodified-Since": lastModified}), 412)
        self.assertEqual(self.get("/restms/feed/news").document().find("feed").get("title"), "later")
        now = self.get("/restms/feed/news").header("last-modified")
        self.assertEqual(self.put("/restms/feed/news", doc, **{"If-Unmodified-Since": now}).code, 200)

    def test_conditionalDelete(self):
        etag = self.get("/restms/feed/news").header("etag")
        self.assertError(self.request("DELETE", "/restms/feed/news", headers={"If-Match": '"stale"'}), 412)
        self.assertEqual(self.get("/restms/feed/news").code, 200)
        self.assertEqual(self.request("DELETE", "/restms/feed/news", headers={"If-Match": etag}).code, 200)
        self.assertError(self.get("/restms/feed/news"), 404)

    def test_conditionalDeleteOfMessage(self):
        pipe, _ = self.createPipe()
        self.join(pipe, "/restms/feed/news", "#")
        self.publish("/restms/feed/news", '<message address="a"/>')
        href = heldOf(self.get(pipe).document())[0].get("href")
        self.assertError(self.request("DELETE", href, headers={"If-Match": '"stale"'}), 412)
        self.assertEqual(len(heldOf(self.get(pipe).document())), 1)
        etag = self.get(href).header("etag")
        self.assertEqual(self.get(href, **{"If-None-Match": etag}).code, 304)
        self.assertEqual(self.request("DELETE", href, headers={"If-Match": etag}).code, 200)

    def test_everyGetHasValidators(self):
        pipe, doc = self.createPipe()
        join = doc.find("pipe").findAll("join")[0].get("href")
        for uri in ("/restms/domain/", "/restms/feed/", pipe, join):
            response = self.get(uri)
            self.assertTrue(response.header("etag"), uri)
            self.assertTrue(response.header("last-modified"), uri)
            self.assertEqual(self.get(uri, **{"If-None-Match": response.header("etag")}).code, 304, uri)

    def test_contentConditional(self):
        location = self.post("/restms/feed/news", b"raw", "text/plain").header("location")
        response = self.get(location)
        self.assertEqual(self.get(location, **{"If-None-Match": response.header("etag")}).code, 304)
        self.assertEqual(self.get(location, **{"If-Modified-Since": response.header("last-modified")}).code, 304)


class AsyncletTests(RestMSTestCase):
    """The asynclet's long poll: wait, arrive, time out, go away."""

    def setUp(self):
        RestMSTestCase.setUp(self)
        self.createFeed("news", "fanout")
        self.pipe, doc = self.createPipe()
        self.join(self.pipe, "/restms/feed/news")
        self.asynclet = asyncletOf(self.get(self.pipe).document())

    def test_waitsForTheNextMessage(self):
        waiting = self.start("GET", self.asynclet)
        self.assertNoResult(waiting)
        self.publish("/restms/feed/news", '<message address="arrived"/>')
        self.client.flush()
        response = self.successResultOf(waiting)
        self.assertEqual(response.code, 200)
        message = response.document().find("message")
        self.assertEqual(message.get("address"), "arrived")
        self.assertEqual(message.get("href"), self.asynclet)
        self.assertEqual(response.header("content-location"), self.asynclet)
        # The message is held now, and the pipe lists a fresh asynclet.
        doc = self.get(self.pipe).document()
        self.assertEqual([m.get("href") for m in heldOf(doc)], [self.asynclet])
        self.assertNotEqual(asyncletOf(doc), self.asynclet)
        self.assertEqual(re.match(r"<([^>]+)>", response.header("link")).group(1), asyncletOf(doc))

    def test_alreadyArrived(self):
        self.publish("/restms/feed/news", '<message address="early"/>')
        response = self.get(self.asynclet)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.document().find("message").get("address"), "early")

    def test_timeoutIs204(self):
        waiting = self.start("GET", self.asynclet)
        self.clock.advance(LONG_POLL - 0.1)
        self.client.flush()
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.client.flush()
        response = self.successResultOf(waiting)
        self.assertEqual(response.code, 204)
        self.assertEqual(response.body, b"")
        # The next message still takes the asynclet's hash.
        self.publish("/restms/feed/news", '<message address="later"/>')
        self.assertEqual(self.get(self.asynclet).document().find("message").get("address"), "later")

    def test_clientAsksShorterTimeout(self):
        waiting = self.start("GET", self.asynclet + "?timeout=1")
        self.clock.advance(1)
        self.client.flush()
        self.assertEqual(self.successResultOf(waiting).code, 204)
        # Not longer than the configured window.
        waiting = self.start("GET", self.asynclet + "?timeout=3600")
        self.clock.advance(LONG_POLL)
        self.client.flush()
        self.assertEqual(self.successResultOf(waiting).code, 204)

    def test_zeroTimeoutPolls(self):
        waiting = self.start("GET", self.asynclet + "?timeout=0")
        self.clock.advance(0)
        self.client.flush()
        self.assertEqual(self.successResultOf(waiting).code, 204)

    def test_badTimeout(self):
        for value in ("-1", "soon", "nan", "inf"):
            self.assertError(self.get(self.asynclet + "?timeout=" + value), 400)

    def pollTimers(self):
        """The long-poll timers pending on the clock (the ones due a window from now)."""
        due = self.clock.seconds() + LONG_POLL
        return [call for call in self.clock.getDelayedCalls() if call.getTime() == due]

    def test_clientGoesAway(self):
        """The wait and its timer are cancelled; the message that then arrives stays in the pipe."""
        connection = RawConnection(self.root, self.clock)
        connection.send("GET", path(self.asynclet))
        pipe = self.successResultOf(self.engine.lookup(path(self.pipe).rsplit("/", 1)[1]))
        self.assertEqual(pipe._waiting, 1)
        self.assertEqual(len(self.pollTimers()), 1)
        connection.disconnect()
        self.assertEqual(pipe._waiting, 0)
        self.assertEqual(self.pollTimers(), [])
        self.publish("/restms/feed/news", '<message address="kept"/>')
        self.assertEqual([m.get("address") for m in heldOf(self.get(self.pipe).document())], ["kept"])
        self.assertEqual(self.get(self.asynclet).code, 200)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_noTimerLeftAfterAnswer(self):
        waiting = self.start("GET", self.asynclet)
        self.assertEqual(len(self.pollTimers()), 1)
        self.publish("/restms/feed/news", '<message address="x"/>')
        self.client.flush()
        self.successResultOf(waiting)
        self.assertEqual(self.pollTimers(), [])

    def test_pipeDeletedWhileWaiting(self):
        waiting = self.start("GET", self.asynclet)
        self.assertEqual(self.delete(self.pipe).code, 200)
        self.client.flush()
        self.assertError(self.successResultOf(waiting), 404)

    def test_asyncletDelete403(self):
        self.assertError(self.delete(self.asynclet), 403)
        self.assertError(self.put(self.asynclet, restms("<message/>")), 403)

    def test_engineStopAnswers503(self):
        waiting = self.start("GET", self.asynclet)
        self.successResultOf(self.engine.stop())
        self.client.flush()
        self.assertError(self.successResultOf(waiting), 503)

    def test_fifoLoop(self):
        """Asynclet GET, DELETE, GET the Link's next: the consumer's loop."""
        self.publish("/restms/feed/news", "".join('<message address="n%d"/>' % i for i in range(3)))
        uri, seen = self.asynclet, []
        for _ in range(3):
            response = self.get(uri)
            seen.append(response.document().find("message").get("address"))
            self.assertEqual(self.delete(uri).code, 200)
            uri = re.match(r"<([^>]+)>", response.header("link")).group(1)
        self.assertEqual(seen, ["n0", "n1", "n2"])
        self.assertEqual(heldOf(self.get(self.pipe).document()), [])
        self.assertEqual(asyncletOf(self.get(self.pipe).document()), uri)


class OndemandTests(RestMSTestCase):
    def test_asyncletPullsOneMessage(self):
        self.createFeed("jobs", "rotator")
        self.publish("/restms/feed/jobs", '<message address="j1"/><message address="j2"/>')
        pipe, _ = self.createPipe("ondemand")
        self.join(pipe, "/restms/feed/jobs")
        self.assertEqual(heldOf(self.get(pipe).document()), [])
        asynclet = asyncletOf(self.get(pipe).document())
        response = self.get(asynclet)
        self.assertEqual(response.document().find("message").get("address"), "j1")
        self.assertEqual(len(heldOf(self.get(pipe).document())), 1)
        self.delete(asynclet)
        nxt = re.match(r"<([^>]+)>", response.header("link")).group(1)
        self.assertEqual(self.get(nxt).document().find("message").get("address"), "j2")


class ScenarioTests(RestMSTestCase):
    """The seed's two scenarios, end to end."""

    def test_serviceRequestResponse(self):
        # The service: a service feed, a pipe joined to it.
        self.assertEqual(self.post("/restms/domain/", restms('<feed name="time" type="service"/>')).code, 201)
        service, _ = self.createPipe()
        self.join(service, "/restms/feed/time")
        serviceAsynclet = asyncletOf(self.get(service).document())
        # The requestor: a pipe; the request goes to the default feed,
        # addressed to the service, replying to the requestor's pipe.
        requestor, doc = self.createPipe()
        replyTo = doc.find("pipe").get("name")
        requestorAsynclet = asyncletOf(doc)
        answer = self.start("GET", requestorAsynclet)
        self.publish("/restms/feed/", '<message address="time" reply_to="%s" correlation_id="q1"/>' % replyTo)
        served = self.get(serviceAsynclet)
        request = served.document().find("message")
        self.assertEqual(request.get("reply_to"), replyTo)
        self.publish(
            "/restms/feed/",
            '<message address="%s" correlation_id="q1"><content>12:00</content></message>' % request.get("reply_to"),
        )
        self.client.flush()
        response = self.successResultOf(answer).document().find("message")
        self.assertEqual(response.get("correlation_id"), "q1")
        self.assertEqual(self.get(response.find("content").get("href")).body, b"12:00")
        # Posting to the service feed itself works too.
        self.delete(request.get("href"))
        self.publish("/restms/feed/time", '<message address="time" reply_to="%s"/>' % replyTo)
        nxt = re.match(r"<([^>]+)>", served.header("link")).group(1)
        self.assertEqual(self.get(nxt).document().find("message").get("reply_to"), replyTo)
        # The service feed goes when its last join goes.
        join = self.get(service).document().find("pipe").findAll("join")[1].get("href")
        self.delete(join)
        self.assertError(self.get("/restms/feed/time"), 404)

    def test_replyToWrittenAsPipeURI(self):
        """The seed's requestor puts its pipe's path in reply_to: the default feed still finds the pipe."""
        requestor, doc = self.createPipe()
        self.publish("/restms/feed/", '<message address="%s"/>' % path(requestor))
        self.publish("/restms/feed/", '<message address="%s"/>' % requestor)
        self.assertEqual(len(heldOf(self.get(requestor).document())), 2)

    def test_newsfeed(self):
        self.assertEqual(self.post("/restms/domain/", restms('<feed name="usenet" type="topic"/>')).code, 201)
        pets, _ = self.createPipe()
        everything, _ = self.createPipe()
        self.join(pets, "usenet", "rec.pets.*")
        self.join(everything, "/restms/feed/usenet", "#")
        self.publish(
            "/restms/feed/usenet",
            '<message address="rec.pets.cats" message_id="1"/>'
            '<message address="rec.cars.fast" message_id="2"/>'
            '<message address="rec.pets.dogs" message_id="3"/>'
            '<message address="rec.pets.dogs.big" message_id="4"/>'
            '<message address="rec.pets.fish" message_id="5"/>',
        )
        self.assertEqual([m.get("message_id") for m in heldOf(self.get(pets).document())], ["1", "3", "5"])
        everyId = [m.get("message_id") for m in heldOf(self.get(everything).document())]
        self.assertEqual(everyId, ["1", "2", "3", "4", "5"])


class StreamTests(RestMSTestCase):
    """Stream pipes as multipart/mixed and as server-sent events."""

    def setUp(self):
        RestMSTestCase.setUp(self)
        self.createFeed("news", "fanout")
        self.pipe, doc = self.createPipe("stream")
        self.pipeHash = doc.find("pipe").get("name")
        self.join(self.pipe, "/restms/feed/news")
        self.connection = RawConnection(self.root, self.clock)

    def pipeObject(self):
        return self.successResultOf(self.engine.lookup(self.pipeHash))

    def parts(self, body):
        boundary = re.search(r'boundary="([^"]+)"', self.connection.head()[1]["content-type"]).group(1).encode()
        parts = []
        for chunk in body.split(b"--" + boundary + b"\r\n")[1:]:
            head, _, content = chunk.partition(b"\r\n\r\n")
            headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n"))
            self.assertTrue(content.endswith(b"\r\n"))
            parts.append((headers, content[:-2]))
        return parts

    def test_multipart(self):
        self.publish("/restms/feed/news", '<message address="before"/>')
        self.connection.send("GET", path(self.pipe), [("Accept", "multipart/mixed")])
        code, headers = self.connection.head()
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("multipart/mixed; boundary="))
        self.assertEqual(headers["transfer-encoding"], "chunked")
        self.publish("/restms/feed/news", '<message address="after1"/><message address="after2"/>')
        parts = self.parts(self.connection.body())
        self.assertEqual(len(parts), 3)
        for headers, content in parts:
            self.assertEqual(headers["Content-Type"], XML)
            message = parseDocument(content, "xml").find("message")
            self.assertEqual(headers["Content-Location"], message.get("href"))
            self.assertTrue(message.get("href").startswith(BASE + "/restms/resource/"))
        addresses = [parseDocument(c, "xml").find("message").get("address") for _, c in parts]
        self.assertEqual(addresses, ["before", "after1", "after2"])
        # Written means deleted.
        self.assertEqual(heldOf(self.get(self.pipe).document()), [])

    def test_multipartJSON(self):
        self.connection.send("GET", path(self.pipe), [("Accept", "multipart/mixed, application/restms+json")])
        self.publish("/restms/feed/news", '<message address="j"/>')
        [(headers, content)] = self.parts(self.connection.body())
        self.assertEqual(headers["Content-Type"], JSON)
        self.assertEqual(json.loads(content)["restms"]["message"][0]["address"], "j")

    def test_clientGoesAwayMessagesStay(self):
        self.connection.send("GET", path(self.pipe), [("Accept", "multipart/mixed")])
        self.assertTrue(self.pipeObject().consumed)
        self.connection.disconnect()
        self.assertFalse(self.pipeObject().consumed)
        self.publish("/restms/feed/news", '<message address="kept"/>')
        self.assertEqual([m.get("address") for m in heldOf(self.get(self.pipe).document())], ["kept"])

    def test_backpressure(self):
        """While the transport is full, messages stay held; they flow when it drains."""
        self.connection.send("GET", path(self.pipe), [("Accept", "multipart/mixed")])
        self.connection.transport.producer.pauseProducing()
        self.publish("/restms/feed/news", '<message address="p1"/><message address="p2"/>')
        self.assertEqual(self.parts(self.connection.body()), [])
        self.assertEqual(len(heldOf(self.get(self.pipe).document())), 2)
        self.connection.transport.producer.resumeProducing()
        self.assertEqual(len(self.parts(self.connection.body())), 2)
        self.assertEqual(heldOf(self.get(self.pipe).document()), [])

    def test_secondConsumer409(self):
        self.connection.send("GET", path(self.pipe), [("Accept", "multipart/mixed")])
        other = RawConnection(self.root, self.clock)
        other.send("GET", path(self.pipe), [("Accept", "text/event-stream")])
        self.assertEqual(other.head()[0], 409)
        self.assertIn("text/plain", other.head()[1]["content-type"])

    def test_onlyStreamPipesStream(self):
        fifo, _ = self.createPipe("fifo")
        self.assertError(self.get(fifo, Accept="multipart/mixed"), 406)
        self.assertError(self.get(fifo, Accept="text/event-stream"), 406)

    def ended(self):
        """Whether the chunked response has ended (the last chunk was received)."""
        return self.connection.transport.value().endswith(b"\r\n0\r\n\r\n")

    def test_deletedPipeEndsMultipart(self):
        """Deleting a stream pipe closes the multipart body and ends the response."""
        self.connection.send("GET", path(self.pipe), [("Accept", "multipart/mixed")])
        self.publish("/restms/feed/news", '<message address="one"/>')
        self.assertFalse(self.ended())
        self.assertEqual(self.delete(self.pipe).code, 200)
        self.assertTrue(self.ended())
        boundary = re.search(r'boundary="([^"]+)"', self.connection.head()[1]["content-type"]).group(1)
        self.assertTrue(self.connection.body().endswith(b"--%s--\r\n" % boundary.encode()))
        self.assertEqual(len(self.parts(self.connection.body())), 1)

    def test_deletedPipeEndsEvents(self):
        """Deleting a stream pipe ends its event stream."""
        self.connection.send("GET", path(self.pipe), [("Accept", "text/event-stream")])
        self.publish("/restms/feed/news", '<message address="one"/>')
        self.assertFalse(self.ended())
        self.assertEqual(self.delete(self.pipe).code, 200)
        self.assertTrue(self.ended())
        self.assertEqual([f["event"] for f in self.events()], [b"one"])

    def test_streamPipeDocument(self):
        """Read without a streaming Accept, a stream pipe is a document like any pipe."""
        self.publish("/restms/feed/news", '<message address="held"/>')
        doc = self.get(self.pipe).document()
        self.assertEqual(doc.find("pipe").get("type"), "stream")
        self.assertEqual([m.get("address") for m in heldOf(doc)], ["held"])

    def events(self):
        # The frames of one reactor turn are written at its end.
        self.clock.advance(0)
        frames = []
        for block in self.connection.body().split(b"\n\n"):
            fields = {}
            for line in block.split(b"\n"):
                if line and not line.startswith(b":"):
                    name, _, value = line.partition(b": ")
                    fields[name.decode()] = value
            if fields:
                frames.append(fields)
        return frames

    def test_sse(self):
        self.publish("/restms/feed/news", '<message address="one"/>')
        self.connection.send("GET", path(self.pipe), [("Accept", "text/event-stream")])
        code, headers = self.connection.head()
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("text/event-stream"))
        self.publish("/restms/feed/news", '<message address="two" message_id="m2"><content>x</content></message>')
        frames = self.events()
        self.assertEqual([f["event"] for f in frames], [b"one", b"two"])
        self.assertEqual([f["id"] for f in frames], [b"1", b"2"])
        data = json.loads(frames[1]["data"])["restms"]["message"][0]
        self.assertEqual(data["message_id"], "m2")
        self.assertEqual(data["feed"], BASE + "/restms/feed/news")
        # The message is deleted once written: its hrefs would be of no use.
        self.assertNotIn("href", data)
        self.assertNotIn("href", data["content"][0])
        self.assertEqual(heldOf(self.get(self.pipe).document()), [])

    def test_sseHeartbeat(self):
        self.connection.send("GET", path(self.pipe), [("Accept", "text/event-stream")])
        before = self.connection.body()
        self.clock.advance(HEARTBEAT)
        self.assertEqual(self.connection.body()[len(before) :], b": ping\n\n")
        self.connection.disconnect()
        self.clock.advance(HEARTBEAT)
        self.assertFalse(self.pipeObject().consumed)

    def test_sseLastEventIdResume(self):
        """Messages up to Last-Event-ID count as seen; the rest are sent."""
        self.publish("/restms/feed/news", "".join('<message address="r%d"/>' % i for i in range(1, 5)))
        self.connection.send("GET", path(self.pipe), [("Accept", "text/event-stream"), ("Last-Event-ID", "2")])
        frames = self.events()
        self.assertEqual([f["id"] for f in frames], [b"3", b"4"])
        self.assertEqual([f["event"] for f in frames], [b"r3", b"r4"])

    def test_sseBackpressure(self):
        self.connection.send("GET", path(self.pipe), [("Accept", "text/event-stream")])
        self.connection.transport.producer.pauseProducing()
        self.publish("/restms/feed/news", '<message address="slow"/>')
        self.assertEqual(self.events(), [])
        self.assertEqual(len(heldOf(self.get(self.pipe).document())), 1)
        self.connection.transport.producer.resumeProducing()
        self.assertEqual([f["event"] for f in self.events()], [b"slow"])


    def test_sseWithoutDeletedContent(self):
        """A content deleted while its message waits in a stream pipe is not in the event."""
        self.connection.send("GET", path(self.pipe), [("Accept", "text/event-stream")])
        self.connection.transport.producer.pauseProducing()
        self.publish("/restms/feed/news", '<message address="m"><content>keep</content><content>drop</content></message>')
        href = heldOf(self.get(self.pipe).document())[0].get("href")
        contents = self.get(href).document().find("message").findAll("content")
        self.assertEqual(self.delete(contents[1].get("href")).code, 200)
        self.connection.transport.producer.resumeProducing()
        [frame] = self.events()
        data = json.loads(frame["data"])["restms"]["message"][0]
        self.assertEqual([c["$text"] for c in data["content"]], ["keep"])


class MiscellaneousTests(RestMSTestCase):
    def test_unknownPaths404(self):
        for uri in ("/restms", "/restms/", "/restms/nothing", "/restms/feed/a/b", "/restms/resource/"):
            self.assertError(self.get(uri), 404)

    def test_unknownResource404(self):
        self.assertError(self.get("/restms/resource/AAAAAAAAAAAAAAAAAAAAAAAA"), 404)
        self.assertError(self.post("/restms/resource/AAAAAAAAAAAAAAAAAAAAAAAA", restms("<join/>")), 404)
        self.assertError(self.put("/restms/resource/AAAAAAAAAAAAAAAAAAAAAAAA", restms("<feed/>")), 404)

    def test_head(self):
        response = self.request("HEAD", "/restms/domain/")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertTrue(response.header("etag"))

    def test_pipeDelete(self):
        pipe, doc = self.createPipe()
        asynclet = asyncletOf(doc)
        self.assertEqual(self.delete(pipe).code, 200)
        self.assertError(self.get(pipe), 404)
        self.assertError(self.get(asynclet), 404)
        self.assertEqual(self.delete(pipe).code, 200)
        self.assertEqual(self.get("/restms/domain/").document().find("domain").findAll("pipe"), [])

    def test_unexpectedErrorIs500(self):
        def broken(name):
            raise RuntimeError("boom")

        self.patch(self.engine, "getDomain", broken)
        self.assertError(self.get("/restms/domain/"), 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
