"""
Tests for L{rocketd.admin.metrics} and L{rocketd.admin.health} as the
composition root wires them: C{/metrics}, C{/healthz} and C{/readyz} on
the admin listener without the cookie, counts read from the components
at scrape time, bounded labels, and systemd's notification datagram.
"""

import os
import socket

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase

from rocketd.admin.health import notifySystemd
from rocketd.admin.metrics import adminRoute, mainRoute
from rocketd.app import Rocketd, makeRocketdService
from rocketd.config import Config

from .support import MOON, parseResponse


def samples(body: bytes) -> dict:
    """@return: C{{(name, frozenset(labels.items())): value}} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


class MetricsTests(TestCase):
    def build(self, **settings):
        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, vhosts={"/moon": MOON}, **settings)
        rocketd = Rocketd(config, MemoryReactorClock())
        self.successResultOf(rocketd.start())
        return rocketd

    def request(self, site, method, path, headers=b"", body=b""):
        """Send one raw request through the site; return (status, headers, body)."""
        client = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = site.buildProtocol(client)
        transport = StringTransport(peerAddress=client)
        channel.makeConnection(transport)
        if body:
            headers += b"Content-Length: %d\r\n" % (len(body),)
        channel.dataReceived(
            b"%s %s HTTP/1.1\r\nHost: example.test\r\n%s\r\n%s" % (method, path, headers, body)
        )
        channel.connectionLost(None)
        return parseResponse(transport.value())[:3]

    def scrape(self, rocketd):
        status, headers, body = self.request(rocketd.adminSite(), b"GET", b"/metrics")
        self.assertEqual(status, 200)
        return samples(body)

    def test_metricsWithoutTheCookie(self):
        """
        C{/metrics} of the admin listener answers without the cookie, in
        the Prometheus text format; the rest of the admin API still asks
        for it.
        """
        rocketd = self.build()
        site = rocketd.adminSite()
        status, headers, body = self.request(site, b"GET", b"/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"text/plain", headers[b"content-type"])
        self.assertIn(b"rocketd_messages_published_total 0.0", body)
        self.assertEqual(self.request(site, b"GET", b"/vhosts")[0], 401)
        # A deeper path under an open name is the admin API's (and guarded).
        self.assertEqual(self.request(site, b"GET", b"/metrics/x")[0], 401)

    def test_engineCountsReadAtScrapeTime(self):
        """
        Publishes, deliveries and drops are the engine's own counts, read
        when scraped: a pipe of depth 1 that gets two messages shows one
        dropped.
        """
        rocketd = self.build(pipe_depth=1)
        engine = rocketd.engine
        domain = self.successResultOf(engine.getDomain("default"))
        feed, _ = self.successResultOf(domain.createFeed("f", "fanout"))
        pipe = self.successResultOf(domain.createPipe("fifo"))
        self.successResultOf(pipe.join(feed))
        from rocketd.engine.message import Message

        self.successResultOf(feed.publish([Message(address="a"), Message(address="b")]))
        got = self.scrape(rocketd)
        self.assertEqual(got[("rocketd_messages_published_total", frozenset())], 2)
        self.assertEqual(got[("rocketd_messages_delivered_total", frozenset())], engine.stats["delivered"])
        self.assertEqual(got[("rocketd_messages_dropped_total", frozenset({("cause", "limit")}))], 1)
        self.assertEqual(got[("rocketd_vhosts", frozenset())], 1)

    def test_requestsByFaceRouteAndStatus(self):
        """
        Each request of the main listener counts once by face, route kind,
        method and status; no vhost path, feed name or channel name is a
        label.
        """
        rocketd = self.build()
        site = rocketd.site()
        self.request(site, b"GET", b"/restms/domain/")
        self.request(site, b"GET", b"/restms/feed/secret-feed-name")
        self.request(site, b"GET", b"/moon/channels/secret-channel/events")
        got = self.scrape(rocketd)
        requests = {k: v for k, v in got.items() if k[0] == "rocketd_http_requests_total"}
        labels = [dict(k[1]) for k in requests]
        self.assertIn(
            {"listener": "main", "face": "restms", "route": "domain", "method": "GET", "status": "200"}, labels
        )
        self.assertTrue(any(l["face"] == "restms" and l["route"] == "feed" for l in labels))
        self.assertTrue(any(l["face"] == "webrocket" and l["route"] == "channels/events" for l in labels))
        text = repr(labels)
        for secret in ("secret", "moon"):
            self.assertNotIn(secret, text)

    def test_routesAreBounded(self):
        """Route kinds come from a fixed set, whatever the path."""
        self.assertEqual(mainRoute(b"/restms/anything"), ("restms", "other"))
        self.assertEqual(mainRoute(b"/restms/"), ("restms", "root"))
        self.assertEqual(mainRoute(b"/a/b/c"), ("webrocket", "vhost"))
        self.assertEqual(mainRoute(b"/a/channels/channels/channels/events"), ("webrocket", "channels/channels"))
        self.assertEqual(mainRoute(b"/static/rocket.js"), ("static", "static"))
        self.assertEqual(adminRoute(b"/vhosts/moon"), ("admin", "vhosts"))
        self.assertEqual(adminRoute(b"/nothing"), ("admin", "other"))

    def test_connectionCapsAndProcess(self):
        """
        The listeners' caps (open, limit, refused, evicted) and the process
        collector are in the exposition, and the daemon registers nothing
        in prometheus_client's global registry.
        """
        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, listen="tcp:0:interface=127.0.0.1", admin="tcp:0:interface=127.0.0.1")
        reactor = MemoryReactorClock()
        before = set(REGISTRY._names_to_collectors)
        service = makeRocketdService(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        rocketd = service.rocketd
        got = self.scrape(rocketd)
        self.assertEqual(got[("rocketd_connections_limit", frozenset({("listener", "admin")}))], 128)
        self.assertEqual(got[("rocketd_connections_refused_total", frozenset({("listener", "main")}))], 0)
        self.assertIn(("process_cpu_seconds_total", frozenset()), got)
        self.assertEqual(set(REGISTRY._names_to_collectors), before)


class HealthTests(TestCase):
    def request(self, site, path):
        return MetricsTests.request(self, site, b"GET", path)

    def test_readyOnlyOnceListening(self):
        """
        C{/readyz} is 503 with the reason until the engine has started and
        the listeners listen, then 200; 503 again once stopping.
        C{/healthz} is 200 all along. Neither needs the cookie.
        """
        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, listen="tcp:0:interface=127.0.0.1", admin="tcp:0:interface=127.0.0.1")
        service = makeRocketdService(config, MemoryReactorClock())
        site = service.rocketd.adminSite()
        status, _, body = self.request(site, b"/readyz")
        self.assertEqual((status, body), (503, b"The engine has not started yet.\n"))
        self.assertEqual(self.request(site, b"/healthz")[:3:2], (200, b"ok\n"))
        service.privilegedStartService()
        service.startService()
        self.assertEqual(self.request(site, b"/readyz")[:3:2], (200, b"ready\n"))
        service.stopService()
        self.assertEqual(self.request(site, b"/readyz")[:3:2], (503, b"The daemon is stopping.\n"))


class NotifyTests(TestCase):
    def bind(self):
        path = os.path.join(self.mktemp())
        os.makedirs(path)
        address = os.path.join(path, "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(address)
        s.settimeout(5)
        return s, address

    def test_notify(self):
        """One datagram with the state goes to C{$NOTIFY_SOCKET}."""
        s, address = self.bind()
        self.assertTrue(notifySystemd("READY=1", {"NOTIFY_SOCKET": address}))
        self.assertEqual(s.recv(100), b"READY=1")

    def test_noSocket(self):
        """Without C{$NOTIFY_SOCKET} nothing is sent."""
        self.assertFalse(notifySystemd("READY=1", {}))

    def test_daemonNotifiesReadyAndStopping(self):
        """
        The daemon sends READY=1 once its listeners listen and STOPPING=1
        when it stops.
        """
        s, address = self.bind()
        self.patch(os, "environ", dict(os.environ, NOTIFY_SOCKET=address))
        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, listen="tcp:0:interface=127.0.0.1", admin="tcp:0:interface=127.0.0.1")
        service = makeRocketdService(config, MemoryReactorClock())
        service.privilegedStartService()
        service.startService()
        self.assertEqual(s.recv(100), b"READY=1")
        service.stopService()
        self.assertEqual(s.recv(100), b"STOPPING=1")
