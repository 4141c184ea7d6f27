"""
The composition root: builds the engine, the faces and the listeners from
one L{rocketd.config.Config}.

This is the only module that knows every component; each component gets
its settings and its reactor injected here and reads no option or file
itself.
"""

from __future__ import annotations

import json

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.resource import Resource

from rocketd.http.guard import INTERNAL_ERROR, GuardedSite
from rocketd.http.paths import RESTMS, faceOf

log = Logger()


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
    @ivar admin: the admin listener's resource.
    @ivar vhosts: the WebRocket vhost registry.
    @ivar frontend: the WebRocket frontend (browsers' WebSockets).
    """

    def __init__(self, config, reactor):
        from rocketd.engine.memory import MemoryEngine
        from rocketd.restms.app import RestMSApp

        self.config = config
        self.reactor = reactor
        self.engine = MemoryEngine(
            clock=reactor,
            pipeDepth=config.pipe_depth,
            feedBacklog=config.feed_backlog,
            stageTTL=config.stage_ttl,
            stageCount=config.stage_max_count,
            stageBytes=config.stage_max_bytes,
        )
        self.vhosts = None
        self.frontend = None
        self.restms = RestMSApp(
            self.engine,
            clock=reactor,
            longPoll=config.long_poll,
            heartbeat=config.heartbeat,
            authorizeDomain=self._authorizeDomain,
            anonymous=config.anonymous,
        )
        self.admin = Resource()
        fallback = None
        try:
            from rocketd.webrocket.backend import BackendApp
            from rocketd.webrocket.channels import Channels
            from rocketd.webrocket.tokens import TokenStore
            from rocketd.webrocket.vhosts import VhostRegistry
            from rocketd.webrocket.workers import WorkerPool
        except ImportError:
            BackendApp = None
        if BackendApp is not None:
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
            backend = BackendApp(self.vhosts, channels, tokens, workers, clock=reactor, heartbeat=config.heartbeat)
            from rocketd.webrocket.frontend import Frontend

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
            )
            channels.addClosedObserver(self.frontend.channelClosed)
            channels.addSubscriberCounter(self.frontend.browsersOn)
            fallback = backend.resource(websocket=self.frontend.resource())
            try:
                from rocketd.admin.api import AdminApp, ensureCookie
            except ImportError:
                AdminApp = None
            if AdminApp is not None:
                cookie = ensureCookie(stateDir.child("admin.cookie"))
                self.admin = AdminApp(
                    self.vhosts, channels, workers, self.frontend.slowClientsClosed, cookie
                ).resource()
        root = RootResource(fallback)
        root.putChild(b"restms", self.restms.resource())
        from rocketd.webrocket.frontend import staticResource

        root.putChild(b"static", staticResource())
        self.root = root

    def _authorizeDomain(self, request, name):
        """
        RestMS reaches a vhost's domain only with that vhost's backend
        credentials (HTTP Basic, user C{wr}, the vhost token): channels may
        be private, so RestMS must not be a way around the token.
        """
        if self.vhosts is None:
            return False
        from rocketd.webrocket.backend import BACKEND_USER

        path = "/" + name
        return request.getUser() == BACKEND_USER and self.vhosts.checkToken(path, request.getPassword())

    def start(self):
        """
        Prepare what must exist before the listeners open (the default
        domain, the persisted vhosts).

        @return: Deferred firing when ready.
        """
        from twisted.internet.defer import DeferredList

        from rocketd.interfaces import DEFAULT_DOMAIN

        ds = [self.engine.createDomain(DEFAULT_DOMAIN, "Default domain")]
        if self.vhosts is not None:
            ds.append(self.vhosts.load())
        return DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)

    def site(self):
        return self._site(self.root, _internalError)

    def adminSite(self):
        return self._site(self.admin, _jsonInternalError)

    def _site(self, resource, internalError):
        site = GuardedSite(
            resource,
            maxBody=self.config.max_body,
            tooLargeBody=_tooLargeBody,
            internalError=internalError,
            logPath=self.config.access_log or None,
        )
        if not self.config.access_log:
            # No access log: not even the line per request that a Site
            # writes to the daemon's own log by default.
            site.log = lambda request: None
        return site


class _RocketdService(MultiService):
    """Starts the engine state before the listeners, stops the engine after them."""

    def __init__(self, rocketd):
        MultiService.__init__(self)
        self.rocketd = rocketd

    def privilegedStartService(self):
        # Listeners bind in privilegedStartService; the state they serve is
        # created first (the embedded engine answers synchronously).
        self.rocketd.start().addErrback(self._startFailed)
        try:
            MultiService.privilegedStartService(self)
        except CannotListenError as e:
            # One sentence, not a traceback: the port is taken, or not ours.
            raise SystemExit(f"rocketd: {e}") from None

    def _startFailed(self, failure):
        log.failure("rocketd could not start", failure)
        self.rocketd.reactor.stop()

    def stopService(self):
        d = MultiService.stopService(self)
        d.addCallback(lambda _: self.rocketd.engine.stop())
        return d


def makeRocketdService(config, reactor):
    """
    Build the daemon's service: the main listener and the admin listener.

    @param config: a L{rocketd.config.Config}.
    @param reactor: the reactor to listen, time and schedule with.
    @return: an L{IService}.
    """
    FilePath(config.state_dir).makedirs(ignoreExistingDirectory=True)
    rocketd = Rocketd(config, reactor)
    service = _RocketdService(rocketd)
    for name, endpoint, site in (("main", config.listen, rocketd.site()), ("admin", config.admin, rocketd.adminSite())):
        listener = StreamServerEndpointService(serverFromString(reactor, endpoint), site)
        # A listener that can't listen (the port is taken) stops the start
        # instead of leaving a daemon that serves nothing.
        listener._raiseSynchronously = True
        listener.setName(name)
        listener.setServiceParent(service)
    return service
