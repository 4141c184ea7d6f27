"""
The composition root: builds the engine, the faces and the listeners from
one L{rocketd.config.Config}.

This is the only module that knows every component; each component gets
its settings and its reactor injected here and reads no option or file
itself.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping
from urllib.parse import unquote_to_bytes

from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, DeferredList, FirstError, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.resource import Resource

from rocketd.admin.api import AdminApp, ensureCookie
from rocketd.admin.health import HealthResource, Readiness, ReadyResource, notifySystemd
from rocketd.admin.logs import ACCESS_LOG_FORMATTERS, AccessLog
from rocketd.admin.metrics import (
    MetricsCollector,
    MetricsResource,
    OpenRoutes,
    RequestCounts,
    adminRoute,
    mainRoute,
    makeRegistry,
)
from rocketd.http.coalesce import Coalescer
from rocketd.http.connections import (
    ConnectionLimitFactory,
    LimitingReactor,
    fitToFileLimit,
    listenBacklog,
    withBacklog,
)
from rocketd.http.guard import INTERNAL_ERROR, GuardedSite
from rocketd.http.frontdoor import FrontDoorFactory
from rocketd.http.paths import RESTMS, WEBROCKET, faceOf
from rocketd.http.sse import Heartbeat
from rocketd.interfaces import DEFAULT_DOMAIN
from rocketd.restms.app import RestMSApp
from rocketd.restms.app import hotRoute as restmsHotRoute
from rocketd.webrocket.backend import BACKEND_USER, BackendApp
from rocketd.webrocket.channels import Channels
from rocketd.webrocket.frontend import Frontend, staticResource
from rocketd.webrocket.tokens import TokenStore
from rocketd.webrocket.vhosts import VhostRegistry
from rocketd.webrocket.workers import WorkerPool

log = Logger()

#: The most connections the admin listener keeps open (rocketctl makes one
#: at a time).
ADMIN_MAX_CONNECTIONS = 128


def engineLimits(config) -> dict:
    """The config's [restms] limits, as every engine takes them."""
    return dict(
        pipeDepth=config.pipe_depth,
        feedBacklog=config.feed_backlog,
        stageTTL=config.stage_ttl,
        stageCount=config.stage_max_count,
        stageBytes=config.stage_max_bytes,
    )


def memoryEngine(config, reactor):
    """The embedded engine, bounded by the config's [restms] limits."""
    from rocketd.engine.memory import MemoryEngine

    return MemoryEngine(clock=reactor, **engineLimits(config))


def rabbitmqEngine(config, reactor):
    """
    The RabbitMQ engine (experimental) on the config's broker; it starts
    connecting at once (starting it again is harmless).
    """
    from rocketd.engine.rabbitmq import RabbitMQEngine

    engine = RabbitMQEngine(reactor, config.rabbitmq_url, heartbeat=config.rabbitmq_heartbeat, **engineLimits(config))
    engine.start()
    return engine


#: The engines by the name a config gives (L{rocketd.config.ENGINES}):
#: name -> C{factory(config, reactor)} returning an
#: L{rocketd.interfaces.IEngine}. A factory imports its engine when
#: called, so that an engine's library is needed only by those who choose
#: it.
ENGINE_FACTORIES: Mapping[str, Callable] = {"memory": memoryEngine, "rabbitmq": rabbitmqEngine}


class RootResource(Resource):
    """
    The main listener's root: C{/restms/...} goes to the RestMS face,
    C{/static/...} to the static files, and every other path to the
    WebRocket face (whose vhost paths may have any number of segments).
    """

    def __init__(self, fallback):
        Resource.__init__(self)
        self._fallback = fallback

    def getChild(self, name, request):
        if self._fallback is None:
            return Resource.getChild(self, name, request)
        # Hand the whole path to the fallback: put back the segment that
        # traversal has just taken.
        request.postpath.insert(0, request.prepath.pop())
        return self._fallback

    def render(self, request):
        return self._fallback.render(request)


def _tooLargeBody(request):
    """The 413 answer: plain text for RestMS, a JSON error elsewhere."""
    if faceOf(request.path) == RESTMS:
        return (b"text/plain; charset=utf-8", b"The request body is larger than the server accepts.\n")
    return (b"application/json", b'{"error": "The request body is larger than the server accepts."}')


def _internalError(request):
    """The last-resort 500: plain text for RestMS, a JSON error elsewhere."""
    if faceOf(request.path) == RESTMS:
        return (b"text/plain; charset=utf-8", INTERNAL_ERROR.encode("utf-8") + b"\n")
    return _jsonInternalError(request)


def _jsonInternalError(request):
    """The last-resort 500 of the admin API and WebRocket: a JSON error."""
    return (b"application/json", json.dumps({"error": INTERNAL_ERROR}).encode("utf-8"))


class Rocketd:
    """
    Everything one daemon runs, built from a config.

    @ivar engine: the L{rocketd.interfaces.IEngine}.
    @ivar root: the main listener's resource.
    @ivar admin: the admin API's resource (cookie guarded).
    @ivar adminRoot: the admin listener's resource: the admin API, and
        C{/metrics}, C{/healthz}, C{/readyz} without the cookie.
    @ivar vhosts: the WebRocket vhost registry.
    @ivar backend: the WebRocket backend API.
    @ivar frontend: the WebRocket frontend (browsers' WebSockets).
    @ivar heartbeat: the L{Heartbeat} of every event stream (one timer).
    @ivar coalescer: the L{Coalescer} of every stream that writes a turn's
        frames at its end (one flush per turn).
    """

    def __init__(self, config, reactor):
        """
        @param config: a L{rocketd.config.Config}.
        @param reactor: the reactor every component listens, times and
            schedules with.
        @raise KeyError: if no engine has the config's engine name (a
            validated config names one of L{ENGINE_FACTORIES}).
        """
        self.config = config
        self.reactor = reactor
        self.engine = ENGINE_FACTORIES[config.engine](config, reactor)
        # The streams of both faces share one heartbeat timer and one end-of-turn flush.
        self.heartbeat = Heartbeat(reactor, config.heartbeat)
        self.coalescer = Coalescer(reactor)
        self.restms = RestMSApp(
            self.engine,
            clock=reactor,
            longPoll=config.long_poll,
            heartbeat=self.heartbeat,
            authorizeDomain=self._authorizeDomain,
            anonymous=config.anonymous,
            coalescer=self.coalescer,
        )
        stateDir = FilePath(config.state_dir)
        self.vhosts = VhostRegistry(
            self.engine,
            stateDir.child("vhosts.json"),
            clock=reactor,
            declared=config.vhosts,
        )
        # The WebRocket face's parts, each shared by the faces that use it.
        channels = Channels(self.engine, self.vhosts)
        workers = WorkerPool(
            self.engine,
            self.vhosts,
            reactor,
            backlog=config.event_backlog,
            backlogAge=config.event_backlog_age,
        )
        tokens = TokenStore(reactor, config.token_ttl)
        self.vhosts.addObserver(tokens.vhostChanged)
        self.backend = backend = BackendApp(
            self.vhosts, channels, tokens, workers, clock=reactor, heartbeat=self.heartbeat
        )
        self.frontend = Frontend(
            self.vhosts,
            channels,
            tokens,
            workers,
            clock=reactor,
            sendQueue=config.send_queue,
            allowedOrigins=config.allowed_origins,
            pingInterval=config.ping_interval,
            maxMessage=config.max_body,
            coalescer=self.coalescer,
        )
        channels.addClosedObserver(self.frontend.channelClosed)
        channels.addSubscriberCounter(self.frontend.browsersOn)
        cookie = ensureCookie(stateDir.child("admin.cookie"))
        self.admin = AdminApp(self.vhosts, channels, workers, self.frontend.slowClientsClosed, cookie).resource()
        # Operations: metrics read from the components' own counts at
        # scrape time (rocketd.admin.metrics), health and readiness; served
        # on the admin listener without the cookie.
        self.requests = RequestCounts()
        #: One access log file for every listener (rocketd.admin.logs).
        self.accessLog = (
            AccessLog(config.access_log, ACCESS_LOG_FORMATTERS[config.access_log_format], reactor)
            if config.access_log
            else None
        )
        #: (listener name, ConnectionLimitFactory), as each listener listens.
        self.listenerFactories = []
        self.readiness = Readiness()
        frontend = self.frontend
        self.metrics = makeRegistry(
            MetricsCollector(
                engineStats=lambda: getattr(self.engine, "stats", {}),
                listeners=lambda: self.listenerFactories,
                websockets=lambda: frontend.connections,
                slowClosed=lambda: frontend.overflows,
                workerDropped=lambda: sum(workers.dropped(v) for v in self.vhosts.list()),
                vhosts=lambda: len(self.vhosts.list()),
                requests=self.requests,
                sseStreams=lambda: len(self.heartbeat),
                workers=lambda: sum(len(workers.listWorkers(v)) for v in self.vhosts.list()),
            )
        )
        self.metricsResource = MetricsResource(self.metrics)
        self.adminRoot = OpenRoutes(
            self.admin,
            {
                b"metrics": self.metricsResource,
                b"healthz": HealthResource(),
                b"readyz": ReadyResource(self.readiness),
            },
        )
        self._backendResource = backend.resource(websocket=self.frontend.resource())
        root = RootResource(self._backendResource)
        root.putChild(b"restms", self.restms.resource())
        root.putChild(b"static", staticResource())
        self.root = root

    def _authorizeDomain(self, request, name):
        """
        RestMS reaches a vhost's domain only with that vhost's backend
        credentials (HTTP Basic, user C{wr}, the vhost token): channels may
        be private, so RestMS must not be a way around the token.
        """
        path = "/" + name
        return request.getUser() == BACKEND_USER and self.vhosts.checkToken(path, request.getPassword())

    def start(self):
        """
        Start the engine, then prepare what must exist before the
        listeners open (the default domain, the persisted vhosts).

        @return: Deferred firing when ready.
        """

        def prepare(_):
            ds = [self.engine.createDomain(DEFAULT_DOMAIN, "Default domain"), self.vhosts.load()]
            return DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)

        # A failure of either step is a FirstError: one sentence (see _RocketdService).
        started = DeferredList([self.engine.start()], fireOnOneErrback=True, consumeErrors=True)
        return started.addCallback(prepare)

    def site(self):
        return self._site(self.root, _internalError, "main", mainRoute)

    def mainFactory(self):
        """The main listener's factory: its site, behind the front door when the config says so."""
        site = self.site()
        if not self.config.front_door:
            return site
        return FrontDoorFactory(site, self.hotRoute)

    def hotRoute(self, method: bytes, path: bytes, headers):
        """The front door's route: the handler of a hot request, or None (see L{rocketd.http.frontdoor})."""
        face = faceOf(path)
        if face == RESTMS:
            postpath = [unquote_to_bytes(segment) for segment in path[1:].split(b"/")][1:]
            accept = headers.getRawHeaders(b"accept")
            return restmsHotRoute(self.restms, method, postpath, accept[-1] if accept else None)
        if face == WEBROCKET:
            return self._backendResource.hotRoute(method, path, headers)
        return None

    def adminSite(self):
        return self._site(self.adminRoot, _jsonInternalError, "admin", adminRoute)

    def metricsSite(self):
        """The site of the C{[rocketd] metrics} listener: C{/metrics} only."""
        root = Resource()
        root.putChild(b"metrics", self.metricsResource)
        return self._site(root, _jsonInternalError, "metrics", adminRoute)

    def _site(self, resource, internalError, name, routeOf):
        site = GuardedSite(
            resource,
            maxBody=self.config.max_body,
            tooLargeBody=_tooLargeBody,
            internalError=internalError,
            logPath=None,
            headTimeout=self.config.head_timeout,
            reactor=self.reactor,
        )
        # Each request ends in the site's log(): count it there (one
        # dictionary increment per request), then write the access log
        # line, if any. No access log: not even the line per request that
        # a Site writes to the daemon's own log by default.
        count = self.requests.counter(name, routeOf)
        writeLine = self.accessLog.write if self.accessLog is not None else None

        def logRequest(request):
            count(request)
            if writeLine is not None:
                writeLine(request)

        site.log = logRequest
        return site


class _Listener(Service):
    """
    One listener: an endpoint and the site it serves. It listens when its
    daemon tells it to (L{listen}), not when the service starts: the
    daemon does so once the engine is ready.
    """

    def __init__(self, name, endpoint, factory):
        self.setName(name)
        self.endpoint = endpoint
        self.factory = factory
        self.port = None
        self._listening = None

    def listen(self):
        """
        @return: Deferred firing with the listening port, or failing with
            L{CannotListenError}.
        """
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallback(self._listened)
        return self._listening

    def _listened(self, port):
        self.port = port
        return port

    def stopService(self):
        """
        Stop listening, or stop trying to.

        @return: what the port's C{stopListening} returns, or None.
        """
        Service.stopService(self)
        listening, self._listening = self._listening, None
        if listening is not None and not listening.called:
            # The daemon, waiting for it, takes the CancelledError.
            listening.cancel()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


class _StartFailed(Exception):
    """The daemon could not start; the argument is the sentence that says why."""


def _why(failure) -> str:
    """@return: the one sentence that says what a failure was."""
    value = failure.value
    message = getattr(value, "message", None) or str(value)
    return message if message else type(value).__name__


class _RocketdService(MultiService):
    """
    The daemon: the engine starts first; the listeners (the children)
    listen only once it is ready, so that no request arrives before the
    state it needs exists. The engine stops after the listeners.

    The embedded engine is ready at once: its listeners bind in
    C{privilegedStartService}, and a start failure (a port taken, an
    unreadable state directory) stops C{twistd} there with one sentence.
    An engine that answers later makes them bind when it does, after
    C{twistd} has given up its privileges; a failure then is logged in
    one sentence and stops the reactor.
    """

    _synchronous = False
    _failedNow = None

    def __init__(self, rocketd):
        MultiService.__init__(self)
        self.rocketd = rocketd

    def privilegedStartService(self):
        MultiService.privilegedStartService(self)
        self._synchronous = True
        try:
            self._start().addErrback(self._startFailed)
        finally:
            self._synchronous = False
        if self._failedNow is not None:
            raise SystemExit(self._failedNow)

    @inlineCallbacks
    def _start(self):
        try:
            yield self.rocketd.start()
        except FirstError as e:
            raise _StartFailed(f"rocketd could not start: {_why(e.subFailure)}") from None
        for listener in self:
            if self._stopping:
                # Stopped before the engine was ready: listen nowhere.
                return
            try:
                yield listener.listen()
            except CancelledError:
                # Stopped while it was trying to listen.
                return
            except CannotListenError as e:
                # One sentence, not a traceback: the port is taken, or not ours.
                raise _StartFailed(f"rocketd: {e}") from None
        if not self._stopping:
            self.rocketd.readiness.ready()
            notifySystemd("READY=1")

    _stopping = False

    def _startFailed(self, failure):
        if failure.check(_StartFailed):
            why = failure.value.args[0]
        else:
            # Not a failure to start but a mistake in starting: keep its traceback.
            log.failure("rocketd could not start", failure)
            why = f"rocketd could not start: {_why(failure)}"
        if self._synchronous:
            self._failedNow = why
            return
        log.critical("{why}", why=why)
        try:
            self.rocketd.reactor.stop()
        except ReactorNotRunning:
            pass

    def stopService(self):
        self._stopping = True
        self.rocketd.readiness.notReady("The daemon is stopping.")
        notifySystemd("STOPPING=1")
        d = MultiService.stopService(self)
        d.addCallback(lambda _: self.rocketd.engine.stop())
        if self.rocketd.accessLog is not None:
            d.addBoth(lambda result: (self.rocketd.accessLog.close(), result)[1])
        return d


def makeRocketdService(config, reactor):
    """
    Build the daemon's service: the engine named by the config, then the
    main listener and the admin listener, listening once the engine is
    ready.

    @param config: a L{rocketd.config.Config}.
    @param reactor: the reactor to listen, time and schedule with.
    @return: an L{IService}.
    """
    FilePath(config.state_dir).makedirs(ignoreExistingDirectory=True)
    rocketd = Rocketd(config, reactor)
    service = _RocketdService(rocketd)
    # Every connection is a file descriptor: the caps must fit the
    # process's limit, or a flood of clients ends in EMFILE.
    (mainCap, adminCap), fittedTo = fitToFileLimit((config.max_connections, ADMIN_MAX_CONNECTIONS))
    if fittedTo is not None:
        log.warn(
            "max_connections {wanted} does not fit the file descriptor limit {limit}: "
            "the main listener keeps at most {cap} connections open.",
            wanted=config.max_connections,
            limit=fittedTo,
            cap=mainCap,
        )
    backlog = listenBacklog()
    listeners = [
        ("main", config.listen, rocketd.mainFactory(), mainCap),
        ("admin", config.admin, rocketd.adminSite(), adminCap),
    ]
    if config.metrics:
        listeners.append(("metrics", config.metrics, rocketd.metricsSite(), adminCap))

    def capped(factory, cap, name):
        limited = ConnectionLimitFactory(factory, cap, clock=reactor, name=name)
        rocketd.listenerFactories.append((name, limited))
        return limited

    for name, endpoint, site, cap in listeners:
        # The cap wraps whatever the endpoint listens with (TLS included).
        limited = LimitingReactor(reactor, lambda factory, cap=cap, name=name: capped(factory, cap, name))
        _Listener(name, serverFromString(limited, withBacklog(endpoint, backlog)), site).setServiceParent(service)
    return service
