"""
Tests for L{rocketd.http.paths}: the main listener's path space, and the
places that ask it (the 413 and last-resort 500 formats, vhost names, the
backend's words).
"""

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from rocketd.app import Rocketd
from rocketd.config import Config
from rocketd.errors import InvalidName
from rocketd.http.paths import (
    ADMIN_WORDS,
    BACKEND_WORDS,
    FACE_PREFIXES,
    RESERVED_PREFIXES,
    RESERVED_SEGMENTS,
    RESTMS,
    STATIC,
    WEBROCKET,
    faceOf,
    reservedSegments,
)
from rocketd.webrocket.vhosts import checkPath

from .support import MOON, exchange, parseResponse


class FaceOfTests(TestCase):
    def test_faces(self):
        """The first segment, compared exactly, names the face; every other path is WebRocket's."""
        cases = {
            b"/restms": RESTMS,
            b"/restms/": RESTMS,
            b"/restms/feed/default": RESTMS,
            b"/static/rocket.js": STATIC,
            b"/": WEBROCKET,
            b"": WEBROCKET,
            b"/moon/channels": WEBROCKET,
            b"/restmsx/channels": WEBROCKET,
            b"/RESTMS/feed/x": WEBROCKET,
            b"//restms/feed/x": WEBROCKET,
            b"/admin": WEBROCKET,
        }
        self.assertEqual({path: faceOf(path) for path in cases}, cases)

    def test_percentEncoded(self):
        """As twisted.web routes on the decoded segment, so does L{faceOf}."""
        self.assertEqual(faceOf(b"/%72estms/feed/x"), RESTMS)
        self.assertEqual(faceOf(b"/restms%2Ffeed/x"), WEBROCKET)
        self.assertEqual(faceOf(b"/%ff/x"), WEBROCKET)


class VhostNameTests(TestCase):
    def test_words(self):
        """Every word either API puts after a vhost path is reserved in a vhost path."""
        self.assertEqual(RESERVED_SEGMENTS, {"channels", "token", "events", "workers"})
        self.assertLessEqual(set(BACKEND_WORDS) | set(ADMIN_WORDS), RESERVED_SEGMENTS)
        self.assertEqual(reservedSegments(["a", "Workers", "token"]), ["token", "workers"])

    def test_prefixes(self):
        """The faces' prefixes, and the two the WebRocket profile reserves for the server."""
        self.assertEqual(RESERVED_PREFIXES, {"restms", "static", "admin", "metrics"})

    def test_sameNamesAsBefore(self):
        """The vhost paths accepted and refused are the ones the registry always had."""
        for path in ["/restms", "/RestMS/a", "/static", "/admin/x", "/Metrics", "/moon/channels",
                     "/moon/TOKEN", "/a/events/b", "/a/workers"]:
            self.assertRaises(InvalidName, checkPath, path)
        for path in ["/moon", "/apps/chat", "/restmsx", "/moon/restms", "/moon/admin", "/staticfiles",
                     "/moon/channel", "/moon/worker"]:
            checkPath(path)


class MainListenerTests(TestCase):
    def build(self, **settings):
        state = self.mktemp()
        os.makedirs(state)
        rocketd = Rocketd(Config(state_dir=state, vhosts={"/moon": MOON}, **settings), MemoryReactorClock())
        self.successResultOf(rocketd.start())
        return rocketd

    def test_rootMountsTheFacePrefixes(self):
        """The composition root mounts a face at each of L{FACE_PREFIXES}, and nothing else."""
        self.assertEqual(set(self.build().root.children), set(FACE_PREFIXES))

    def test_tooLargeInTheFormatOfThePathsFace(self):
        """
        A 413 is plain text for a path the RestMS face serves (a percent-
        encoded prefix included) and JSON for any other (C{/restmsx} is a
        vhost path).
        """
        site = self.build(max_body=10).site()
        site.startFactory()
        self.addCleanup(site.stopFactory)
        for path, contentType in [
            (b"/restms/feed/default", b"text/plain; charset=utf-8"),
            (b"/%72estms/feed/default", b"text/plain; charset=utf-8"),
            (b"/restmsx/channels/a/events", b"application/json"),
            (b"/moon/channels/a/events", b"application/json"),
        ]:
            raw = exchange(site, b"POST %s HTTP/1.1\r\nHost: rocket.test\r\nContent-Length: 100\r\n\r\n" % (path,))
            status, headers, body, _ = parseResponse(raw)
            self.assertEqual((status, headers[b"content-type"]), (413, contentType), path)
