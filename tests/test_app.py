"""
Tests for L{rocketd.app}: the composition root wires the faces onto one
site, and the site writes an access log only when asked to.
"""

import base64
import io
import json
import os

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase
from twisted.web import http

from rocketd.app import Rocketd
from rocketd.config import Config

from .support import BAD_HOSTS, MOON, exchange, parseResponse


class RocketdSiteTests(TestCase):
    def build(self, **settings):
        state = self.mktemp()
        os.makedirs(state)
        config = Config(state_dir=state, vhosts={"/moon": MOON}, **settings)
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

    def test_streamsShareTheClocksTimers(self):
        """
        The composition root owns the stream timers of its reactor and
        hands them to both faces: one heartbeat (at the configured
        interval) for RestMS and the WebRocket workers, one end-of-turn
        coalescer for RestMS and the WebSocket fan-out.
        """
        rocketd = self.build(heartbeat=7.0)
        self.assertIs(rocketd.restms.heartbeat, rocketd.heartbeat)
        self.assertIs(rocketd.backend.heartbeat, rocketd.heartbeat)
        self.assertIs(rocketd.restms.coalescer, rocketd.coalescer)
        self.assertIs(rocketd.frontend.fans._coalescer, rocketd.coalescer)
        self.assertEqual((rocketd.heartbeat.clock, rocketd.heartbeat.interval), (rocketd.reactor, 7.0))

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
class BadHostAndLastResortTests(TestCase):
    """
    Both listeners' sites: a Host that is no host never breaks a route
    (no 5xx, no HTML), and an exception no route handles is a 500 in the
    face's format.
    """

    build = RocketdSiteTests.build

    def send(self, site, method, path, host, headers=b""):
        site.startFactory()
        self.addCleanup(site.stopFactory)
        raw = exchange(site, b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, path, host, headers))
        return parseResponse(raw)

    def test_badHostOnEveryRoute(self):
        rocketd = self.build()
        wr = b"Authorization: Basic " + base64.b64encode(b"wr:" + MOON.encode()) + b"\r\n"
        cookie = b"X-Rocketd-Cookie: " + rocketd.admin._cookie + b"\r\n"
        routes = [
            (rocketd.site(), b"GET", b"/restms/", b"", 404),
            (rocketd.site(), b"GET", b"/restms/domain/", b"", 200),
            (rocketd.site(), b"GET", b"/restms/domain/moon", wr, 200),
            (rocketd.site(), b"GET", b"/restms/unknown/path", b"", 404),
            (rocketd.site(), b"GET", b"/restms/feed/default", b"", 200),
            (rocketd.site(), b"GET", b"/restms/resource/nohash", b"", 404),
            (rocketd.site(), b"GET", b"/moon/channels", wr, 200),
            (rocketd.site(), b"GET", b"/moon/token?uid=u", wr, 200),
            (rocketd.site(), b"GET", b"/", b"", 404),
            (rocketd.adminSite(), b"GET", b"/vhosts", cookie, 200),
            (rocketd.adminSite(), b"GET", b"/vhosts/moon", cookie, 200),
            (rocketd.adminSite(), b"DELETE", b"/nothing", cookie, 404),
        ]
        for bad in BAD_HOSTS:
            for site, method, path, headers, expected in routes:
                status, answer, body, _ = self.send(site, method, path, bad, headers)
                self.assertEqual(status, expected, (bad, path, body))
                self.assertNotIn(b"html", answer.get(b"content-type", b""), (bad, path))
                if bad:
                    self.assertNotIn(bad, body)

    def test_lastResortInTheFacesFormat(self):
        """
        RestMS answers a text/plain sentence, WebRocket and the admin API a
        JSON error; the traceback is logged once per request.
        """
        rocketd = self.build()

        def broken(request):
            raise ZeroDivisionError()

        self.patch(rocketd.root.children[b"restms"], "render", broken)
        self.patch(rocketd.root, "getChild", lambda name, request: 1 / 0)
        self.patch(rocketd.admin, "render", broken)
        cookie = b"X-Rocketd-Cookie: " + rocketd.admin._cookie + b"\r\n"
        for site, path, headers, contentType in (
            (rocketd.site(), b"/restms/domain/", b"", b"text/plain; charset=utf-8"),
            (rocketd.site(), b"/moon/channels", b"", b"application/json"),
            (rocketd.adminSite(), b"/vhosts", cookie, b"application/json"),
        ):
            status, headers, body, _ = self.send(site, b"GET", path, b"rocket.test", headers)
            self.assertEqual(status, 500, (path, body))
            self.assertEqual(headers[b"content-type"], contentType)
            if contentType == b"application/json":
                self.assertEqual(list(json.loads(body)), ["error"])
            self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class _LateEngine:
    """
    A memory engine whose C{start} fires only when the test says so (as an
    engine on a network would): C{ready.callback(None)} starts it,
    C{ready.errback(...)} fails its start. C{early} names the methods
    called before it started.
    """

    def __init__(self, config, reactor):
        from twisted.internet.defer import Deferred

        from rocketd.app import memoryEngine

        self._engine = memoryEngine(config, reactor)
        self.ready = Deferred()
        self.started = False
        self.early = []

    def __getattr__(self, name):
        value = getattr(self._engine, name)
        if not callable(value) or self.started:
            return value

        def early(*args, **kwargs):
            self.early.append(name)
            return value(*args, **kwargs)

        return early

    def start(self):
        from twisted.internet.defer import Deferred
        from twisted.python.failure import Failure

        started = Deferred()

        def fire(result):
            if isinstance(result, Failure):
                started.errback(result)
            else:
                self.started = True
                started.callback(None)

        self.ready.addBoth(fire)
        return started


class _Port:
    stopped = False

    def stopListening(self):
        self.stopped = True


class _Endpoint:
    """A server endpoint whose C{listen} answers what the test says; it records its calls and ports."""

    def __init__(self, listening):
        self._listening = listening
        self.calls = []
        self.listened = []

    def listen(self, factory):
        d = self._listening()
        self.calls.append(d)
        d.addCallback(lambda port: self.listened.append(port) or port)
        return d


class RocketdServiceTests(TestCase):
    """
    The daemon's service: the engine the config names, the injected
    reactor, and listeners that listen only once the engine is ready.
    """

    def service(self, engine="memory", **settings):
        from twisted.internet.testing import MemoryReactorClock

        import rocketd.app as app

        self.patch(app, "ENGINE_FACTORIES", dict(app.ENGINE_FACTORIES, late=_LateEngine))
        state = self.mktemp()
        config = Config(
            state_dir=os.path.abspath(state),
            listen="tcp:8080:interface=127.0.0.1",
            admin="tcp:8082:interface=127.0.0.1",
            engine=engine,
            **settings,
        )
        self.reactor = MemoryReactorClock()
        return app.makeRocketdService(config, self.reactor)

    def ports(self):
        return sorted(port for port, *_ in self.reactor.tcpServers)

    def test_theConfigNamesTheEngine(self):
        """The engine is the one the config names, built on the daemon's reactor."""
        service = self.service(engine="late")
        self.assertIsInstance(service.rocketd.engine, _LateEngine)

    def test_everyEngineNameHasAnEngine(self):
        """Each name the config accepts builds an engine."""
        from rocketd.app import ENGINE_FACTORIES
        from rocketd.config import ENGINES

        self.assertEqual(sorted(ENGINE_FACTORIES), sorted(ENGINES))

    def test_sitesUseTheInjectedReactor(self):
        """Both sites time their connections on the daemon's reactor, not the global one."""
        rocketd = self.service().rocketd
        self.assertIs(rocketd.site().reactor, self.reactor)
        self.assertIs(rocketd.adminSite().reactor, self.reactor)

    def test_embeddedEngineListensAtOnce(self):
        """The embedded engine is ready at once: both listeners bind in privilegedStartService."""
        service = self.service()
        service.privilegedStartService()
        self.assertEqual(self.ports(), [8080, 8082])
        service.startService()
        self.successResultOf(service.stopService())

    def test_noListenerBeforeTheEngineIsReady(self):
        """
        With an engine that answers later, nothing is asked of it and
        nothing listens until its start has fired; then both listeners do.
        """
        service = self.service(engine="late")
        service.privilegedStartService()
        service.startService()
        self.assertEqual(self.ports(), [])
        service.rocketd.engine.ready.callback(None)
        self.assertEqual(service.rocketd.engine.early, [])
        self.assertEqual(self.ports(), [8080, 8082])
        self.successResultOf(service.stopService())

    def fakeEndpoints(self, service, listening):
        """Give each listener an endpoint whose C{listen} returns C{listening()}; @return: them."""
        endpoints = []
        for listener in service:
            endpoint = _Endpoint(listening)
            listener.endpoint = endpoint
            endpoints.append(endpoint)
        return endpoints

    def test_stoppingStopsListening(self):
        """Stopped, the daemon closes both ports."""
        from twisted.internet.defer import succeed

        service = self.service()
        endpoints = self.fakeEndpoints(service, lambda: succeed(_Port()))
        service.privilegedStartService()
        service.startService()
        self.successResultOf(service.stopService())
        self.assertEqual([e.listened[0].stopped for e in endpoints], [True, True])

    def test_stoppedWhileListening(self):
        """A listen still under way when the daemon stops is cancelled, and nothing is logged as failed."""
        from twisted.internet.defer import Deferred
        from twisted.logger import LogLevel, capturedLogs

        service = self.service()
        endpoints = self.fakeEndpoints(service, Deferred)
        with capturedLogs() as events:
            service.privilegedStartService()
            service.startService()
            self.successResultOf(service.stopService())
        self.assertEqual([len(e.calls) for e in endpoints], [1, 0])
        self.assertTrue(endpoints[0].calls[0].called)
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.warn], [])
        self.assertFalse(self.reactor.hasStopped)

    def test_stoppedBeforeTheEngineIsReady(self):
        """A daemon stopped while its engine starts never listens."""
        service = self.service(engine="late")
        service.privilegedStartService()
        service.startService()
        self.successResultOf(service.stopService())
        service.rocketd.engine.ready.callback(None)
        self.assertEqual(self.ports(), [])

    def test_engineFailsLater(self):
        """
        An engine whose start fails later stops the reactor, with one
        logged sentence and no listener.
        """
        from twisted.logger import LogLevel, globalLogPublisher

        from rocketd.errors import Forbidden

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service = self.service(engine="late")
        service.privilegedStartService()
        service.startService()
        service.rocketd.engine.ready.errback(Forbidden("The broker refused the credentials."))
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.ports(), [])
        critical = [e for e in events if e.get("log_level") == LogLevel.critical]
        self.assertEqual(
            [e["why"] for e in critical], ["rocketd could not start: The broker refused the credentials."]
        )
        self.assertNotIn("log_failure", critical[0])

    def test_startFailsNow(self):
        """A start that fails at once stops twistd there, with one sentence."""
        service = self.service()
        with open(os.path.join(service.rocketd.config.state_dir, "vhosts.json"), "w") as f:
            f.write("not json")
        with self.assertRaises(SystemExit) as raised:
            service.privilegedStartService()
        self.assertTrue(str(raised.exception.code).startswith("rocketd could not start: "), raised.exception.code)
        self.assertIn("vhosts.json", str(raised.exception.code))
        self.assertEqual(self.ports(), [])
