"""Tests for L{rocketd.webrocket.vhosts}: the persistent vhost registry."""

import json
import os
import re
import stat

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rocketd.errors import Conflict, Forbidden, InvalidArgument, InvalidName, NoSuchResource
from rocketd.webrocket import vhosts as vhostsModule
from rocketd.webrocket.vhosts import DELETED, TOKEN_CHANGED, Vhost, VhostRegistry, checkPath
from tests.support import DomainRecorder, temporaryDirectory

TOKEN = "0123456789abcdef0123456789abcdef01234567"


class CheckPathTests(TestCase):
    def test_valid(self):
        for path in ["/moon", "/apps/chat", "/a-b/c_d/E9"]:
            checkPath(path)

    def test_invalid(self):
        for path in ["", "/", "moon", "/moon/", "//moon", "/mo on", "/moon.x", "/" + "a" * 600, None]:
            self.assertRaises(InvalidName, checkPath, path)

    def test_reserved(self):
        for path in ["/restms", "/admin/x", "/Static", "/metrics", "/moon/channels", "/token",
                     "/a/events/b", "/a/workers"]:
            self.assertRaises(InvalidName, checkPath, path)

    def test_domain(self):
        self.assertEqual(Vhost("/apps/chat", TOKEN).domain, "apps/chat")


class VhostRegistryTests(TestCase):
    def setUp(self):
        self.dir = temporaryDirectory(self)
        self.file = self.dir.child("vhosts.json")
        self.engine = DomainRecorder()

    def registry(self, declared={}):
        registry = VhostRegistry(self.engine, self.file, Clock(), declared=declared)
        self.successResultOf(registry.load())
        return registry

    def test_missingFileIsEmpty(self):
        self.assertEqual(self.registry().list(), [])
        self.assertFalse(self.file.exists())

    def test_addPersistsAndSurvivesReload(self):
        registry = self.registry()
        vhost = self.successResultOf(registry.add("/apps/chat"))
        self.assertTrue(re.fullmatch("[0-9a-f]{40}", vhost.token))
        self.assertFalse(vhost.declared)
        self.assertIn("apps/chat", self.engine.domains)
        self.assertEqual(stat.S_IMODE(os.stat(self.file.path).st_mode), 0o600)
        self.engine.domains.clear()
        again = self.registry()
        self.assertEqual(again.get("/apps/chat"), vhost)
        self.assertEqual(self.engine.domains, {"apps/chat"})

    def test_addErrors(self):
        registry = self.registry({"/fixed": TOKEN})
        self.successResultOf(registry.add("/moon"))
        self.failureResultOf(registry.add("/moon"), Conflict)
        self.failureResultOf(registry.add("/fixed"), Conflict)
        self.failureResultOf(registry.add("/restms"), InvalidName)
        self.failureResultOf(registry.add("/moon/events"), InvalidName)

    def test_listSorted(self):
        registry = self.registry({"/b": TOKEN})
        self.successResultOf(registry.add("/c"))
        self.successResultOf(registry.add("/a"))
        self.assertEqual([v.path for v in registry.list()], ["/a", "/b", "/c"])

    def test_declared(self):
        registry = self.registry({"/fixed": TOKEN})
        vhost = registry.get("/fixed")
        self.assertEqual(vhost, Vhost("/fixed", TOKEN, True))
        self.assertIn("fixed", self.engine.domains)
        self.failureResultOf(registry.delete("/fixed"), Forbidden)
        self.failureResultOf(registry.regenerateToken("/fixed"), Forbidden)
        # Declared vhosts are not written to the state file.
        self.successResultOf(registry.add("/other"))
        self.assertEqual(list(json.loads(self.file.getContent())["vhosts"]), ["/other"])

    def test_declaredWinsOverFile(self):
        self.successResultOf(self.registry().add("/moon"))
        registry = self.registry({"/moon": TOKEN})
        self.assertEqual(registry.get("/moon").token, TOKEN)
        self.assertTrue(registry.get("/moon").declared)

    def test_badDeclared(self):
        for declared, error in [({"/moon": "short"}, InvalidArgument), ({"/restms": TOKEN}, InvalidName)]:
            registry = VhostRegistry(self.engine, self.file, Clock(), declared=declared)
            self.failureResultOf(registry.load(), error)

    def test_corruptFileRefusesToLoad(self):
        """A file that can't be read stops the start instead of being overwritten later."""
        badPath = b'{"vhosts": {"bad": "%s"}}' % TOKEN.encode()
        for content in [b"{not json", b'{"vhosts": []}', b'{"vhosts": {"/moon": "x"}}', badPath]:
            self.file.setContent(content)
            registry = VhostRegistry(self.engine, self.file, Clock())
            self.failureResultOf(registry.load(), ValueError)

    def test_delete(self):
        registry = self.registry()
        self.successResultOf(registry.add("/moon"))
        self.assertIsNone(self.successResultOf(registry.delete("/moon")))
        self.assertIsNone(registry.get("/moon"))
        self.assertNotIn("moon", self.engine.domains)
        self.assertIsNone(self.registry().get("/moon"))
        self.failureResultOf(registry.delete("/moon"), NoSuchResource)

    def test_resolve(self):
        """A path or a L{Vhost} resolves to the registry's L{Vhost}; an unknown path raises."""
        registry = self.registry()
        moon = self.successResultOf(registry.add("/moon"))
        self.assertEqual(registry.resolve("/moon"), moon)
        self.assertIs(registry.resolve(moon), moon)
        self.assertRaises(NoSuchResource, registry.resolve, "/mars")

    def test_regenerateToken(self):
        registry = self.registry()
        old = self.successResultOf(registry.add("/moon"))
        new = self.successResultOf(registry.regenerateToken("/moon"))
        self.assertNotEqual(old.token, new.token)
        self.assertFalse(registry.checkToken("/moon", old.token))
        self.assertTrue(registry.checkToken("/moon", new.token))
        self.assertEqual(self.registry().get("/moon").token, new.token)
        self.failureResultOf(registry.regenerateToken("/mars"), NoSuchResource)

    def test_checkToken(self):
        registry = self.registry({"/moon": TOKEN, "/mars": "f" * 40})
        self.assertTrue(registry.checkToken("/moon", TOKEN))
        self.assertTrue(registry.checkToken("/moon", TOKEN.encode()))
        self.assertFalse(registry.checkToken("/mars", TOKEN))
        self.assertFalse(registry.checkToken("/venus", TOKEN))
        self.assertFalse(registry.checkToken("/moon", ""))
        self.assertFalse(registry.checkToken("/moon", TOKEN.upper()))
        self.assertFalse(registry.checkToken("/moon", "é" + TOKEN[1:]))
        self.assertFalse(registry.checkToken("/moon", None))

    def test_checkTokenIsConstantTime(self):
        calls = []
        original = vhostsModule.hmac.compare_digest

        def spy(a, b):
            calls.append((a, b))
            return original(a, b)

        self.patch(vhostsModule.hmac, "compare_digest", spy)
        registry = self.registry({"/moon": TOKEN})
        registry.checkToken("/moon", "nope")
        self.assertEqual(calls, [(TOKEN.encode(), b"nope")])

    def test_observers(self):
        registry = self.registry()
        seen = []
        registry.addObserver(lambda event, vhost: seen.append((event, vhost.path)))
        registry.addObserver(lambda event, vhost: 1 / 0)  # a broken observer does not stop the others
        self.successResultOf(registry.add("/moon"))
        self.successResultOf(registry.regenerateToken("/moon"))
        self.successResultOf(registry.delete("/moon"))
        self.assertEqual(seen, [("added", "/moon"), (TOKEN_CHANGED, "/moon"), (DELETED, "/moon")])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 3)

    def test_failedWriteChangesNothing(self):
        """If the file can't be written, the change does not happen."""
        registry = self.registry()
        self.successResultOf(registry.add("/moon"))
        before = self.file.getContent()

        def broken(fd):
            raise OSError("disk on fire")

        self.patch(vhostsModule.os, "fsync", broken)
        self.failureResultOf(registry.add("/mars"), OSError)
        self.failureResultOf(registry.delete("/moon"), OSError)
        self.assertIsNone(registry.get("/mars"))
        self.assertIsNotNone(registry.get("/moon"))
        self.assertEqual(self.file.getContent(), before)


class WriteAtomicallyTests(TestCase):
    def test_crashBeforeRenameKeepsOldContent(self):
        """A crash between writing the temporary file and renaming it leaves the old file whole."""
        path = temporaryDirectory(self).child("file")
        vhostsModule.writeAtomically(path, b"old")

        def crash(src, dst):
            raise KeyboardInterrupt("power cut")

        self.patch(vhostsModule.os, "replace", crash)
        self.assertRaises(KeyboardInterrupt, vhostsModule.writeAtomically, path, b"new")
        self.assertEqual(path.getContent(), b"old")

    def test_replacesAndSetsMode(self):
        path = temporaryDirectory(self).child("file")
        path.setContent(b"old")
        os.chmod(path.path, 0o644)
        vhostsModule.writeAtomically(path, b"new")
        self.assertEqual(path.getContent(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o600)

    def test_fsyncsFileAndDirectory(self):
        synced = []
        original = os.fsync

        def spy(fd):
            synced.append(os.path.realpath("/proc/self/fd/%d" % fd) if os.path.exists("/proc/self/fd") else fd)
            return original(fd)

        self.patch(vhostsModule.os, "fsync", spy)
        path = temporaryDirectory(self).child("file")
        vhostsModule.writeAtomically(path, b"x")
        self.assertEqual(len(synced), 2)
        if os.path.exists("/proc/self/fd"):
            self.assertEqual(synced[1], os.path.realpath(path.parent().path))
