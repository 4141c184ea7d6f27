"""
Tests for L{rocketd.admin.cli}: C{rocketctl} against the admin API's real
HTTP resource (with a fake vhost registry and backend), through an opener
that hands urllib's requests to L{StubTreq} instead of the network.
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request

from treq.testing import StubTreq
from twisted.trial.unittest import TestCase

from rocketd.admin import cli
from rocketd.admin.api import ensureCookie
from tests.test_admin_api import FakeBackend, fakeAdminApp, makeRegistry, temporaryDirectory


class StubOpener:
    """
    Answers urllib requests with a resource, as
    L{urllib.request.OpenerDirector.open} does: the response for a 2xx,
    L{urllib.error.HTTPError} otherwise.
    """

    def __init__(self, case, resource):
        self.case = case
        self.stub = StubTreq(resource)
        self.requests = []

    def open(self, request, timeout=None):
        self.requests.append((request, timeout))
        d = self.stub.request(
            request.get_method(), request.full_url, headers=dict(request.header_items())
        )
        self.stub.flush()
        response = self.case.successResultOf(d)
        body = self.case.successResultOf(self.stub.content(response))
        if response.code >= 300:
            raise urllib.error.HTTPError(
                request.full_url, response.code, response.phrase.decode("ascii"), {}, io.BytesIO(body)
            )
        return io.BytesIO(body)


class FailingOpener:
    """An opener whose every request fails with one exception."""

    def __init__(self, error):
        self.error = error

    def open(self, request, timeout=None):
        raise self.error


class RocketctlTests(TestCase):
    """Tests for L{cli.main}."""

    def setUp(self):
        self.stateDir = temporaryDirectory(self)
        self.cookie = ensureCookie(self.stateDir.child("admin.cookie"))
        self.vhosts = makeRegistry(self, declared={"/fixed": "f" * 40})
        self.backend = FakeBackend()
        self.opener = StubOpener(self, fakeAdminApp(self.vhosts, self.backend, self.cookie).resource())
        self.environ = {}

    def rocketctl(self, *argv, opener=None, stateDir=True):
        """
        Run rocketctl.

        @return: C{(exit status, stdout, stderr)}.
        """
        args = (["--state-dir", self.stateDir.path] if stateDir else []) + list(argv)
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(
            args, environ=self.environ, stdout=out, stderr=err, opener=opener or self.opener
        )
        return status, out.getvalue(), err.getvalue()

    def assertSucceeds(self, *argv):
        status, out, err = self.rocketctl(*argv)
        self.assertEqual((status, err), (0, ""))
        return out

    def assertFails(self, *argv, **kw):
        """
        @return: the error sentence, checked to be one C{error: ...} line.
        """
        status, out, err = self.rocketctl(*argv, **kw)
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("error: "), err)
        self.assertTrue(err.endswith("\n"))
        self.assertEqual(err.count("\n"), 1, err)
        return err[len("error: ") : -1]

    # Commands

    def test_addVhost(self):
        """add-vhost prints the path, then the token, one per line."""
        out = self.assertSucceeds("add-vhost", "/moon")
        self.assertEqual(out, "/moon\n%s\n" % (self.vhosts.get("/moon").token,))
        self.assertRegex(out.splitlines()[1], "^[0-9a-f]{40}$")

    def test_addVhostPathForms(self):
        """The leading slash may be left out; a nested path works."""
        self.assertEqual(self.assertSucceeds("add-vhost", "sun").splitlines()[0], "/sun")
        self.assertEqual(self.assertSucceeds("add-vhost", "/apps/chat/").splitlines()[0], "/apps/chat")
        self.assertEqual([v.path for v in self.vhosts.list()], ["/apps/chat", "/fixed", "/sun"])

    def test_listVhosts(self):
        """list-vhosts prints one path per line, sorted."""
        self.assertSucceeds("add-vhost", "/moon")
        self.assertSucceeds("add-vhost", "/apps/chat")
        self.assertEqual(self.assertSucceeds("list-vhosts"), "/apps/chat\n/fixed\n/moon\n")

    def test_showVhost(self):
        """show-vhost prints C{key: value} lines: path, token, channel count."""
        self.assertSucceeds("add-vhost", "/apps/chat")
        self.backend.channels["/apps/chat"] = {"a": 1, "b": 2, "c": 0}
        out = self.assertSucceeds("show-vhost", "/apps/chat")
        token = self.vhosts.get("/apps/chat").token
        self.assertEqual(
            out, "path: /apps/chat\ntoken: %s\nchannels: 3\nslow clients closed: 0\ndeclared: no\n" % (token,)
        )

    def test_deleteVhost(self):
        """delete-vhost deletes the vhost and prints nothing."""
        self.assertSucceeds("add-vhost", "/apps/chat")
        self.assertEqual(self.assertSucceeds("delete-vhost", "/apps/chat"), "")
        self.assertIsNone(self.vhosts.get("/apps/chat"))

    def test_regenerateToken(self):
        """regenerate-token prints the vhost's new token."""
        old = self.assertSucceeds("add-vhost", "/moon").splitlines()[1]
        out = self.assertSucceeds("regenerate-token", "/moon")
        new = self.vhosts.get("/moon").token
        self.assertNotEqual(new, old)
        self.assertEqual(out, new + "\n")

    def test_channels(self):
        """add-channel, list-channels (C{name subscribers}), delete-channel."""
        self.assertSucceeds("add-vhost", "/moon")
        self.assertEqual(self.assertSucceeds("add-channel", "/moon", "news"), "")
        self.assertSucceeds("add-channel", "/moon", "chat")
        self.backend.channels["/moon"]["news"] = 4
        self.assertEqual(self.assertSucceeds("list-channels", "/moon"), "chat 0\nnews 4\n")
        self.assertEqual(self.assertSucceeds("delete-channel", "/moon", "news"), "")
        self.assertEqual(self.assertSucceeds("list-channels", "/moon"), "chat 0\n")

    def test_listWorkers(self):
        """list-workers prints C{id filter connected} lines, the time in UTC."""
        self.assertSucceeds("add-vhost", "/moon")
        self.backend.workers["/moon"] = [
            {"id": "w1", "filter": ".*", "connected": 1700000000.25},
            {"id": "w2", "filter": "chat/.*", "connected": 0},
        ]
        self.assertEqual(
            self.assertSucceeds("list-workers", "/moon"),
            "w1 .* 2023-11-14T22:13:20Z\nw2 chat/.* 1970-01-01T00:00:00Z\n",
        )

    # Errors from the admin API

    def test_apiErrors(self):
        """The API's error sentence is printed after C{error:}, and rocketctl exits 1."""
        self.assertIn("/nope", self.assertFails("show-vhost", "/nope"))
        self.assertIn("/nope", self.assertFails("add-channel", "/nope", "news"))
        self.assertSucceeds("add-vhost", "/moon")
        self.assertIn("/moon", self.assertFails("add-vhost", "/moon"))
        self.assertIn("declared", self.assertFails("delete-vhost", "/fixed"))
        self.assertIn("news", self.assertFails("delete-channel", "/moon", "news"))
        self.assertFails("add-channel", "/moon", ".bad")
        self.assertFails("add-channel", "/moon", "a/b")
        self.assertFails("add-vhost", "/")
        self.assertEqual(self.backend.channels, {})

    def test_wrongCookie(self):
        """A cookie that the daemon does not know is an error that says so."""
        self.stateDir.child("admin.cookie").setContent(b"0" * 64)
        self.assertIn("cookie", self.assertFails("list-vhosts"))

    def test_notJSONError(self):
        """An error answer without the JSON body (a proxy's) gives its status."""
        error = urllib.error.HTTPError(
            "http://127.0.0.1:8082/vhosts", 502, "Bad Gateway", {}, io.BytesIO(b"<html>")
        )
        message = self.assertFails("list-vhosts", opener=FailingOpener(error))
        self.assertEqual(message, "the admin API at http://127.0.0.1:8082 answered 502 Bad Gateway")

    def test_connectionRefused(self):
        """A refused connection is an error that names the admin URL."""
        error = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        message = self.assertFails("--admin", "http://127.0.0.1:9/", "list-vhosts", opener=FailingOpener(error))
        self.assertIn("http://127.0.0.1:9", message)
        self.assertIn("connection refused", message)

    def test_timeout(self):
        """No answer in time is an error too; the timeout is passed on."""
        message = self.assertFails("list-vhosts", opener=FailingOpener(TimeoutError("timed out")))
        self.assertIn("no answer in time", message)
        self.assertSucceeds("--timeout", "2.5", "list-vhosts")
        self.assertEqual(self.opener.requests[-1][1], 2.5)

    # Local errors

    def test_missingCookieFile(self):
        """A missing cookie file is an error that names it; nothing is sent."""
        missing = self.stateDir.child("nothing").path
        message = self.assertFails("--state-dir", missing, "list-vhosts", stateDir=False)
        self.assertIn(os.path.join(missing, "admin.cookie"), message)
        message = self.assertFails("--cookie-file", "/nonexistent/cookie", "list-vhosts", stateDir=False)
        self.assertIn("/nonexistent/cookie", message)
        self.assertEqual(self.opener.requests, [])

    def test_emptyCookieFile(self):
        """An empty cookie file is an error."""
        self.stateDir.child("admin.cookie").setContent(b"\n")
        self.assertIn("empty", self.assertFails("list-vhosts"))
        self.assertEqual(self.opener.requests, [])

    def test_usageErrors(self):
        """Bad command lines are C{error:} lines with exit 1 (not argparse's 2)."""
        self.assertFails()
        self.assertFails("launch")
        self.assertFails("add-vhost")
        self.assertFails("add-channel", "/moon")
        self.assertFails("list-vhosts", "extra")
        self.assertFails("--cookie-file", "x", "list-vhosts")  # with --state-dir
        self.assertFails("--admin", "ftp://host", "list-vhosts")
        self.assertFails("--timeout", "0", "list-vhosts")
        self.assertEqual(self.opener.requests, [])

    # Where the cookie and the admin URL come from

    def lastRequest(self):
        request, _ = self.opener.requests[-1]
        return request.full_url, request.get_header("X-rocketd-cookie")

    def test_cookieSources(self):
        """
        --cookie-file, else --state-dir, else $ROCKETD_COOKIE_FILE, else the
        default state directory.
        """
        other = temporaryDirectory(self).child("cookie")
        other.setContent(b"other-cookie-that-is-long-enough-000\n")
        self.environ["ROCKETD_COOKIE_FILE"] = other.path
        self.rocketctl("list-vhosts", stateDir=False)
        self.assertEqual(self.lastRequest()[1], "other-cookie-that-is-long-enough-000")
        self.assertSucceeds("list-vhosts")
        self.assertEqual(self.lastRequest()[1], self.cookie)
        self.rocketctl("--cookie-file", other.path, "list-vhosts", stateDir=False)
        self.assertEqual(self.lastRequest()[1], "other-cookie-that-is-long-enough-000")
        del self.environ["ROCKETD_COOKIE_FILE"]
        self.patch(cli, "DEFAULT_STATE_DIR", self.stateDir.path)
        self.assertEqual(self.rocketctl("list-vhosts", stateDir=False)[0], 0)
        self.assertEqual(self.lastRequest()[1], self.cookie)

    def test_adminURLSources(self):
        """--admin, else $ROCKETD_ADMIN, else http://127.0.0.1:8082."""
        self.assertSucceeds("list-vhosts")
        self.assertEqual(self.lastRequest()[0], "http://127.0.0.1:8082/vhosts")
        self.environ["ROCKETD_ADMIN"] = "http://127.0.0.1:9000/"
        self.assertSucceeds("list-vhosts")
        self.assertEqual(self.lastRequest()[0], "http://127.0.0.1:9000/vhosts")
        self.assertSucceeds("--admin", "http://localhost:8999", "add-vhost", "/apps/chat")
        self.assertEqual(self.lastRequest()[0], "http://localhost:8999/vhosts/apps/chat")

    def test_noProxy(self):
        """The default opener never sends the cookie through a proxy of the environment."""
        self.patch(os, "environ", dict(os.environ, http_proxy="http://proxy.invalid:3128"))

        def proxies(opener):
            return [h.proxies for h in opener.handlers if isinstance(h, urllib.request.ProxyHandler)]

        # urllib's own default would use it:
        self.assertEqual(proxies(urllib.request.build_opener())[0]["http"], "http://proxy.invalid:3128")
        self.assertEqual(proxies(cli._defaultOpener()), [])
