"""
Tests for L{rocketd.app}: the composition root wires the faces onto one
site, and the site writes an access log only when asked to.
"""

import io
import os

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase
from twisted.web import http

from rocketd.app import Rocketd
from rocketd.config import Config


class RocketdSiteTests(TestCase):
    def build(self, **settings):
        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, **settings)
        reactor = MemoryReactorClock()
        rocketd = Rocketd(config, reactor)
        self.successResultOf(rocketd.start())
        return rocketd

    def get(self, site, path, headers=b""):
        """Send one raw GET through the site; return the raw response."""
        site.startFactory()
        self.addCleanup(site.stopFactory)
        client = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = site.buildProtocol(client)
        transport = StringTransport(peerAddress=client)
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: example.test\r\n" + headers + b"\r\n")
        channel.connectionLost(None)
        return transport.value()

    def test_restmsAndWebRocketShareOneSite(self):
        """
        /restms/... reaches the RestMS face and any other path the
        WebRocket face, whose vhost paths keep all their segments.
        """
        rocketd = self.build()
        site = rocketd.site()
        self.assertIn(b"200 OK", self.get(site, b"/restms/domain/").split(b"\r\n")[0])
        # An unknown vhost, several segments deep: WebRocket's JSON 404.
        response = self.get(site, b"/apps/chat/channels")
        self.assertIn(b"404", response.split(b"\r\n")[0])
        self.assertIn(b'"error"', response)
        self.assertIn(b"/apps/chat", response)

    def test_noAccessLogByDefault(self):
        """
        Without C{access_log} the site writes no line per request, not even
        to the daemon's own log.
        """
        legacy = io.StringIO()
        self.patch(http.log, "logfile", legacy)
        site = self.build().site()
        self.get(site, b"/restms/domain/")
        self.assertEqual(legacy.getvalue(), "")

    def test_accessLog(self):
        """With C{access_log} each request appends one line to that file."""
        path = self.mktemp()
        site = self.build(access_log=path).site()
        self.get(site, b"/restms/domain/")
        site.stopFactory()
        with open(path) as f:
            lines = f.readlines()
        self.assertEqual(len(lines), 1)
        self.assertIn('"GET /restms/domain/ HTTP/1.1" 200', lines[0])


class RocketdEngineSettingsTests(TestCase):
    def test_stageSettingsReachTheEngine(self):
        """The [restms] stage_* keys bound the engine's staged contents, on the daemon's reactor."""
        from rocketd.engine.message import Content
        from rocketd.errors import LimitReached, NoSuchResource

        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, stage_ttl=5, stage_max_count=2, stage_max_bytes=3)
        reactor = MemoryReactorClock()
        rocketd = Rocketd(config, reactor)
        self.successResultOf(rocketd.start())
        domain = self.successResultOf(rocketd.engine.getDomain("default"))
        feed = self.successResultOf(domain.getFeed("default"))
        first = self.successResultOf(feed.stageContent(Content("text/plain", b"a")))
        self.successResultOf(feed.stageContent(Content("text/plain", b"b")))
        self.failureResultOf(feed.stageContent(Content("text/plain", b"c")), LimitReached)
        reactor.advance(5)
        self.failureResultOf(rocketd.engine.lookup(first.hash), NoSuchResource)
        self.failureResultOf(feed.stageContent(Content("text/plain", b"four")), LimitReached)
