"""
Tests for L{rocketd.admin.api}: the admin cookie file and the admin HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import stat

from treq.testing import StubTreq
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rocketd.admin.api import AdminApp, ensureCookie
from rocketd.errors import InvalidName, NoSuchResource
from rocketd.webrocket.vhosts import VhostRegistry
from rocketd.http.guard import GuardedSite
from tests.support import (
    BAD_HOSTS,
    DomainRecorder,
    exchange,
    parseResponse,
    temporaryDirectory,
    webrocketFrontend,
    webrocketSetUp,
)

COOKIE = "c0" * 32

_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def makeRegistry(case, declared=None):
    """
    @return: a loaded L{VhostRegistry} in a new temporary directory, with
        an engine that records domains.
    """
    directory = temporaryDirectory(case)
    registry = VhostRegistry(DomainRecorder(), directory.child("vhosts.json"), clock=Clock(), declared=declared or {})
    case.successResultOf(registry.load())
    return registry


class FakeBackend:
    """
    Follows what the admin API uses of the WebRocket face: the channels
    (L{rocketd.webrocket.channels.Channels}), the worker pool's
    C{listWorkers} and the frontend's C{slowClientsClosed}.
    """

    def __init__(self):
        self.channels = {}  # vhost path -> {name: subscribers}
        self.workers = {}  # vhost path -> [worker]
        self.slowClients = {}  # vhost path -> WebSocket clients closed for a full send queue
        self.broken = False

    def listChannels(self, vhost):
        if self.broken:
            return fail(RuntimeError("boom"))
        channels = self.channels.get(vhost.path, {})
        return succeed([{"name": n, "subscribers": channels[n]} for n in sorted(channels)])

    def openChannel(self, vhost, name):
        if not _CHANNEL_NAME.match(name):
            return fail(InvalidName("Invalid channel name %r." % (name,)))
        self.channels.setdefault(vhost.path, {}).setdefault(name, 0)
        return succeed(None)

    def closeChannel(self, vhost, name):
        channels = self.channels.get(vhost.path, {})
        if name not in channels:
            return fail(NoSuchResource("No channel %s in %s." % (name, vhost.path)))
        del channels[name]
        return succeed(None)

    def listWorkers(self, vhost):
        return list(self.workers.get(vhost.path, []))

    def slowClientsClosed(self, path):
        return self.slowClients.get(path, 0)


def fakeAdminApp(vhosts, backend, cookie):
    """An L{AdminApp} on a L{FakeBackend}."""
    return AdminApp(vhosts, backend, backend, backend.slowClientsClosed, cookie)


class EnsureCookieTests(TestCase):
    """Tests for L{ensureCookie}."""

    def setUp(self):
        self.dir = temporaryDirectory(self)
        self.path = self.dir.child("admin.cookie")

    def mode(self):
        return stat.S_IMODE(os.stat(self.path.path).st_mode)

    def test_creates(self):
        """A new cookie is 64 random hex digits, in a file of mode 0600."""
        old = os.umask(0)
        try:
            cookie = ensureCookie(self.path)
        finally:
            os.umask(old)
        self.assertRegex(cookie, r"^[0-9a-f]{64}$")
        self.assertEqual(self.path.getContent().strip(), cookie.encode("ascii"))
        self.assertEqual(self.mode(), 0o600)
        other = self.dir.child("other.cookie")
        self.assertNotEqual(ensureCookie(other), cookie)

    def test_reads(self):
        """An existing cookie is kept and given back."""
        first = ensureCookie(self.path)
        self.assertEqual(ensureCookie(self.path), first)
        self.path.setContent(b"an-operator-chosen-secret-of-enough-length\n")
        os.chmod(self.path.path, 0o600)
        self.assertEqual(ensureCookie(self.path), "an-operator-chosen-secret-of-enough-length")

    def test_replacesUnusable(self):
        """
        An empty or short cookie file (a creation cut short) is replaced by
        a new cookie, still with mode 0600.
        """
        for content in (b"", b"\n", b"abc\n"):
            self.path.setContent(content)
            os.chmod(self.path.path, 0o644)
            cookie = ensureCookie(self.path)
            self.assertRegex(cookie, r"^[0-9a-f]{64}$")
            self.assertEqual(self.path.getContent().strip(), cookie.encode("ascii"))
            self.assertEqual(self.mode(), 0o600)
        self.assertEqual(self.dir.listdir(), ["admin.cookie"])

    def test_tightensMode(self):
        """An existing cookie file that others may read is made private."""
        self.path.setContent(b"x" * 64)
        os.chmod(self.path.path, 0o644)
        self.assertEqual(ensureCookie(self.path), "x" * 64)
        self.assertEqual(self.mode(), 0o600)

    def test_emptyCookieRefused(self):
        """The app never runs with an empty cookie (an empty header would match)."""
        self.assertRaises(ValueError, fakeAdminApp, makeRegistry(self), FakeBackend(), "")


class AdminAPITests(TestCase):
    """Tests for L{AdminApp} through its HTTP resource."""

    def setUp(self):
        self.vhosts = makeRegistry(self, declared={"/fixed": "f" * 40})
        self.backend = FakeBackend()
        self.adminResource = fakeAdminApp(self.vhosts, self.backend, COOKIE).resource()
        self.stub = StubTreq(self.adminResource)

    def request(self, method, path, cookie=COOKIE):
        """
        @return: C{(status, headers, parsed JSON body)}.
        """
        headers = {} if cookie is None else {"X-Rocketd-Cookie": cookie}
        d = self.stub.request(method, "http://127.0.0.1:8082" + path, headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(self.stub.content(response))
        if method == "HEAD":
            return response.code, response.headers, body
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["application/json"])
        return response.code, response.headers, json.loads(body)

    def assertError(self, result, status):
        code, _, body = result
        self.assertEqual(code, status, body)
        self.assertEqual(list(body), ["error"])
        self.assertIsInstance(body["error"], str)
        return body["error"]

    def test_badHost(self):
        """
        A Host that werkzeug refuses (it does not encode as IDNA) does not
        break the API behind the listeners' site: the listening address
        stands in for it.
        """
        site = GuardedSite(self.adminResource, maxBody=1024)
        for bad in BAD_HOSTS:
            for path in (b"/vhosts", b"/vhosts/fixed", b"/nothing"):
                raw = exchange(
                    site,
                    b"GET %s HTTP/1.1\r\nHost: %s\r\nX-Rocketd-Cookie: %s\r\n\r\n" % (path, bad, COOKIE.encode()),
                )
                status, headers, body, _ = parseResponse(raw)
                self.assertEqual(status, 404 if path == b"/nothing" else 200, (bad, path, body))
                self.assertEqual(headers[b"content-type"], b"application/json")
                json.loads(body)

    # Authentication

    def test_noCookie(self):
        """Without the cookie header, every request is 401, unknown paths included."""
        for method, path in [("GET", "/vhosts"), ("POST", "/vhosts/moon"), ("GET", "/nothing")]:
            code, headers, body = self.request(method, path, cookie=None)
            self.assertError((code, headers, body), 401)
            self.assertIn("X-Rocketd-Cookie", body["error"])
            self.assertTrue(headers.hasHeader("WWW-Authenticate"))
        self.assertIsNone(self.vhosts.get("/moon"))

    def test_wrongCookie(self):
        """A wrong cookie (a prefix, another value, an empty one) is 401."""
        for cookie in ("", COOKIE[:-1], COOKIE + "0", "d" * 64):
            self.assertError(self.request("POST", "/vhosts/moon", cookie=cookie), 401)
        self.assertIsNone(self.vhosts.get("/moon"))

    # Vhosts

    def test_addVhost(self):
        """POST /vhosts/{path} creates the vhost: 201, its token, a Location."""
        code, headers, body = self.request("POST", "/vhosts/moon")
        self.assertEqual(code, 201)
        vhost = self.vhosts.get("/moon")
        self.assertEqual(body, {"path": "/moon", "token": vhost.token, "declared": False})
        self.assertEqual(headers.getRawHeaders("Location"), ["/vhosts/moon"])
        self.assertEqual(headers.getRawHeaders("Cache-Control"), ["no-store"])

    def test_addVhostErrors(self):
        """An existing vhost is 409, an invalid or reserved path 400."""
        self.request("POST", "/vhosts/moon")
        self.assertError(self.request("POST", "/vhosts/moon"), 409)
        self.assertError(self.request("POST", "/vhosts/fixed"), 409)
        self.assertError(self.request("POST", "/vhosts/bad%20name"), 400)
        self.assertError(self.request("POST", "/vhosts/restms"), 400)
        message = self.assertError(self.request("POST", "/vhosts/moon/token"), 400)
        self.assertIn("'token'", message)
        self.assertError(self.request("POST", "/vhosts/events"), 400)
        self.assertIn("'workers'", self.assertError(self.request("POST", "/vhosts/apps/Workers"), 400))
        self.assertEqual([v.path for v in self.vhosts.list()], ["/fixed", "/moon"])

    def test_listVhosts(self):
        """GET /vhosts lists every vhost, sorted by path."""
        self.request("POST", "/vhosts/moon")
        self.request("POST", "/vhosts/apps/chat")
        code, _, body = self.request("GET", "/vhosts")
        self.assertEqual(code, 200)
        self.assertEqual([v["path"] for v in body["vhosts"]], ["/apps/chat", "/fixed", "/moon"])
        self.assertEqual(body["vhosts"][1], {"path": "/fixed", "token": "f" * 40, "declared": True})

    def test_showVhost(self):
        """
        GET /vhosts/{path} gives the vhost with its channel count and how
        many of its WebSocket clients were closed for a full send queue.
        """
        self.request("POST", "/vhosts/moon")
        self.backend.channels["/moon"] = {"a": 3, "b": 0}
        self.backend.slowClients["/moon"] = 4
        code, _, body = self.request("GET", "/vhosts/moon")
        self.assertEqual(code, 200)
        token = self.vhosts.get("/moon").token
        self.assertEqual(
            body, {"path": "/moon", "token": token, "declared": False, "channels": 2, "slowClientsClosed": 4}
        )
        code, _, _ = self.request("HEAD", "/vhosts/moon")
        self.assertEqual(code, 200)

    def test_unknownVhost(self):
        """Any operation on an unknown vhost is 404 and names the vhost."""
        for method, path in [
            ("GET", "/vhosts/nope"),
            ("DELETE", "/vhosts/nope"),
            ("PUT", "/vhosts/nope/token"),
            ("GET", "/vhosts/nope/channels"),
            ("GET", "/vhosts/nope/channels/x"),
            ("POST", "/vhosts/nope/channels/x"),
            ("DELETE", "/vhosts/nope/channels/x"),
            ("GET", "/vhosts/nope/workers"),
        ]:
            message = self.assertError(self.request(method, path), 404)
            self.assertIn("/nope", message)
        self.assertEqual([v.path for v in self.vhosts.list()], ["/fixed"])

    def test_deleteVhost(self):
        """DELETE /vhosts/{path} deletes it; a declared vhost is 403."""
        self.request("POST", "/vhosts/moon")
        code, _, body = self.request("DELETE", "/vhosts/moon")
        self.assertEqual((code, body), (200, {"path": "/moon", "deleted": True}))
        self.assertIsNone(self.vhosts.get("/moon"))
        self.assertError(self.request("DELETE", "/vhosts/moon"), 404)
        self.assertError(self.request("DELETE", "/vhosts/fixed"), 403)
        self.assertIsNotNone(self.vhosts.get("/fixed"))

    def test_regenerateToken(self):
        """PUT /vhosts/{path}/token gives a new token; a declared vhost is 403."""
        _, _, created = self.request("POST", "/vhosts/moon")
        code, _, body = self.request("PUT", "/vhosts/moon/token")
        self.assertEqual(code, 200)
        self.assertEqual(body["path"], "/moon")
        self.assertNotEqual(body["token"], created["token"])
        self.assertEqual(self.vhosts.get("/moon").token, body["token"])
        self.assertError(self.request("PUT", "/vhosts/fixed/token"), 403)
        self.assertEqual(self.vhosts.get("/fixed").token, "f" * 40)

    def test_nested(self):
        """Vhost paths with several segments work for every operation."""
        code, headers, body = self.request("POST", "/vhosts/apps/chat")
        self.assertEqual(code, 201)
        self.assertEqual(body["path"], "/apps/chat")
        self.assertEqual(headers.getRawHeaders("Location"), ["/vhosts/apps/chat"])
        self.assertEqual(self.request("GET", "/vhosts/apps/chat")[2]["path"], "/apps/chat")
        self.assertEqual(self.request("POST", "/vhosts/apps/chat/channels/room")[0], 201)
        self.assertEqual(self.backend.channels, {"/apps/chat": {"room": 0}})
        _, _, channels = self.request("GET", "/vhosts/apps/chat/channels")
        self.assertEqual(channels, {"channels": [{"name": "room", "subscribers": 0}]})
        _, _, renewed = self.request("PUT", "/vhosts/apps/chat/token")
        self.assertNotEqual(renewed["token"], body["token"])
        self.assertEqual(self.request("GET", "/vhosts/apps/chat/workers")[2], {"workers": []})
        self.assertError(self.request("GET", "/vhosts/apps"), 404)
        self.assertEqual(self.request("DELETE", "/vhosts/apps/chat")[0], 200)
        self.assertEqual(self.vhosts.list(), [self.vhosts.get("/fixed")])

    def test_longestVhostWins(self):
        """
        With vhosts C{/apps} and C{/apps/chat}, a path is read with the
        vhost that has the most segments.
        """
        self.request("POST", "/vhosts/apps")
        self.request("POST", "/vhosts/apps/chat")
        self.request("POST", "/vhosts/apps/chat/channels/room")
        self.assertEqual(self.backend.channels, {"/apps/chat": {"room": 0}})
        self.assertEqual(self.request("GET", "/vhosts/apps/chat")[2]["path"], "/apps/chat")
        self.assertEqual(self.request("GET", "/vhosts/apps")[2]["path"], "/apps")
        self.request("POST", "/vhosts/apps/channels/lobby")
        self.assertEqual(self.backend.channels["/apps"], {"lobby": 0})

    # Channels

    def test_channels(self):
        """Add, list, show and delete channels of a vhost."""
        self.request("POST", "/vhosts/moon")
        code, headers, body = self.request("POST", "/vhosts/moon/channels/news")
        self.assertEqual((code, body), (201, {"name": "news", "subscribers": 0}))
        self.assertEqual(headers.getRawHeaders("Location"), ["/vhosts/moon/channels/news"])
        self.backend.channels["/moon"]["news"] = 2
        code, _, body = self.request("POST", "/vhosts/moon/channels/news")
        self.assertEqual((code, body), (200, {"name": "news", "subscribers": 2}))
        self.request("POST", "/vhosts/moon/channels/chat")
        code, _, body = self.request("GET", "/vhosts/moon/channels")
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            {"channels": [{"name": "chat", "subscribers": 0}, {"name": "news", "subscribers": 2}]},
        )
        code, _, body = self.request("GET", "/vhosts/moon/channels/news")
        self.assertEqual((code, body), (200, {"name": "news", "subscribers": 2}))
        code, _, body = self.request("DELETE", "/vhosts/moon/channels/news")
        self.assertEqual((code, body), (200, {"name": "news", "deleted": True}))
        self.assertEqual(self.backend.channels["/moon"], {"chat": 0})
        self.assertIn("news", self.assertError(self.request("GET", "/vhosts/moon/channels/news"), 404))
        self.assertError(self.request("DELETE", "/vhosts/moon/channels/news"), 404)

    def test_invalidChannel(self):
        """An invalid channel name is 400."""
        self.request("POST", "/vhosts/moon")
        self.assertError(self.request("POST", "/vhosts/moon/channels/.hidden"), 400)
        self.assertEqual(self.backend.channels, {})

    def test_deleteAllChannels(self):
        """DELETE /vhosts/{path}/channels closes every channel of the vhost only."""
        self.request("POST", "/vhosts/moon")
        self.request("POST", "/vhosts/sun")
        for name in ("a", "b"):
            self.request("POST", "/vhosts/moon/channels/" + name)
        self.request("POST", "/vhosts/sun/channels/c")
        code, _, body = self.request("DELETE", "/vhosts/moon/channels")
        self.assertEqual((code, body), (200, {"deleted": ["a", "b"]}))
        self.assertEqual(self.backend.channels, {"/moon": {}, "/sun": {"c": 0}})

    # Workers

    def test_workers(self):
        """GET /vhosts/{path}/workers lists the connected workers."""
        self.request("POST", "/vhosts/moon")
        worker = {"id": "w1", "filter": "chat/.*", "connected": 1700000000.5}
        self.backend.workers["/moon"] = [worker]
        code, _, body = self.request("GET", "/vhosts/moon/workers")
        self.assertEqual((code, body), (200, {"workers": [worker]}))

    # Protocol errors

    def test_methodNotAllowed(self):
        """A method a resource does not answer is 405 with Allow, as JSON."""
        self.request("POST", "/vhosts/moon")
        code, headers, body = self.request("PUT", "/vhosts/moon")
        self.assertError((code, headers, body), 405)
        self.assertEqual(headers.getRawHeaders("Allow"), ["GET, DELETE"])
        code, headers, body = self.request("GET", "/vhosts/moon/token")
        self.assertError((code, headers, body), 405)
        self.assertEqual(headers.getRawHeaders("Allow"), ["PUT"])
        self.assertError(self.request("DELETE", "/vhosts"), 405)
        self.assertError(self.request("PATCH", "/vhosts/moon"), 405)
        self.assertIsNotNone(self.vhosts.get("/moon"))

    def test_engineErrorsByTheOneTable(self):
        """Each engine error is answered with the status of rocketd.http.errors, its sentence as JSON."""
        from rocketd.http.errors import STATUSES

        self.request("POST", "/vhosts/moon")
        for kind, status in STATUSES:
            self.backend.listChannels = lambda vhost, kind=kind: fail(kind("It went wrong."))
            code, headers, body = self.request("GET", "/vhosts/moon/channels")
            self.assertEqual((code, body), (status, {"error": "It went wrong."}))

    def test_unknownPath(self):
        """Paths outside the API are 404 as JSON."""
        for path in ("/", "/nothing", "/vhosts/moon/"):
            self.assertError(self.request("GET", path), 404)

    def test_unexpectedError(self):
        """An unexpected failure is a 500 JSON error, and is logged."""
        self.request("POST", "/vhosts/moon")
        self.backend.broken = True
        message = self.assertError(self.request("GET", "/vhosts/moon/channels"), 500)
        self.assertNotIn("boom", message)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class AdminAPIWithTheWebRocketFaceTests(TestCase):
    """
    L{AdminApp} on the real parts it drives: the embedded engine, the vhost
    registry and the WebRocket backend app, all in memory.
    """

    def setUp(self):
        webrocketSetUp(self, declared={})
        frontend = webrocketFrontend(self)
        self.stub = StubTreq(
            AdminApp(self.vhosts, self.channels, self.workers, frontend.slowClientsClosed, COOKIE).resource()
        )

    request = AdminAPITests.request

    def test_vhostAndChannels(self):
        """
        A vhost made through the admin API is an engine domain; its channels
        are fanout feeds there, listed, counted and closed through the API.
        """
        code, _, body = self.request("POST", "/vhosts/apps/chat")
        self.assertEqual(code, 201)
        self.assertTrue(self.vhosts.checkToken("/apps/chat", body["token"]))
        domain = self.successResultOf(self.engine.getDomain("apps/chat"))
        self.assertEqual(self.request("POST", "/vhosts/apps/chat/channels/room")[0], 201)
        self.assertEqual(self.request("POST", "/vhosts/apps/chat/channels/room")[0], 200)
        self.assertEqual(self.successResultOf(domain.getFeed("room")).type, "fanout")
        self.assertEqual(
            self.request("GET", "/vhosts/apps/chat/channels")[2],
            {"channels": [{"name": "room", "subscribers": 0}]},
        )
        self.assertEqual(self.request("GET", "/vhosts/apps/chat")[2]["channels"], 1)
        self.assertEqual(self.request("POST", "/vhosts/apps/chat/channels/default")[0], 400)
        self.assertEqual(self.request("GET", "/vhosts/apps/chat/workers")[2], {"workers": []})
        self.assertEqual(self.request("DELETE", "/vhosts/apps/chat/channels/room")[0], 200)
        self.assertEqual(self.request("GET", "/vhosts/apps/chat/channels")[2], {"channels": []})
        self.assertEqual(self.request("DELETE", "/vhosts/apps/chat")[0], 200)
        self.failureResultOf(self.engine.getDomain("apps/chat"), NoSuchResource)
