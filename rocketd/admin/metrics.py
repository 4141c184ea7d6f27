"""
Prometheus metrics: the counts the components already keep, read when
the metrics are scraped, and the requests by face, route and status.

Nothing here counts on the path of a message: the engine's stats, the
listeners' connection caps, the WebRocket frontend and the worker pool
keep their own counts (for their log lines and the admin API), and the
collectors of this module read them at scrape time. The one count made
here is L{RequestCounts}, one dictionary increment per HTTP request (not
per message), when the site logs the request.

The registry is the composition root's (L{rocketd.app}), not
C{prometheus_client}'s global default: two daemons in one process (the
tests) keep two sets of metrics. Labels are bounded: a listener's name, a
face, a route kind, a method and a status; never a pipe hash, a vhost path
or a channel name.

Served by L{MetricsResource} at C{/metrics} of the admin listener (no
cookie: counts only, nothing secret) and, where C{[rocketd] metrics} names
an endpoint, on a listener of its own.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource

from rocketd.http.paths import BACKEND_WORDS, FACE_PREFIXES, WEBROCKET

#: The RestMS resource kinds (the first segment after C{/restms/}) a route
#: label may name; any other is C{other}.
RESTMS_ROUTES = frozenset({"domain", "feed", "resource"})

#: The methods a method label may name; any other is C{other}.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})

#: The admin listener's routes (its first segment).
ADMIN_ROUTES = frozenset({"vhosts", "metrics", "healthz", "readyz"})


def mainRoute(path: bytes) -> Tuple[str, str]:
    """
    The face and the route kind of a main listener's request path: a
    bounded pair (no name of the client's is kept).

    @param path: C{request.path}.
    @return: C{(face, route)}: C{("restms", "feed")},
        C{("webrocket", "channels/events")}, C{("static", "static")}...
    """
    segments = path[1:].split(b"/")
    face = FACE_PREFIXES.get(segments[0], WEBROCKET)
    if face == WEBROCKET:
        # The words of the backend API after the vhost path, at most two
        # (C{/:vhost/channels/:name/events}); the vhost path is not kept.
        words = [w for w in (s.decode("latin-1") for s in segments) if w in BACKEND_WORDS][:2]
        return face, "/".join(words) if words else "vhost"
    if face == "restms":
        kind = segments[1].decode("latin-1") if len(segments) > 1 else ""
        return face, kind if kind in RESTMS_ROUTES else ("root" if kind == "" else "other")
    return face, face


def adminRoute(path: bytes) -> Tuple[str, str]:
    """The face (C{admin}) and route kind of an admin listener's request path."""
    first = path[1:].split(b"/", 1)[0].decode("latin-1")
    return "admin", first if first in ADMIN_ROUTES else "other"


class RequestCounts:
    """
    HTTP requests answered, by listener, face, route, method and status: a
    plain dictionary that L{count} adds one to (a site's C{log} calls it as
    each request ends) and L{MetricsCollector} reads.
    """

    def __init__(self):
        self.counts: Dict[Tuple[str, str, str, str, str], int] = {}

    def counter(self, listener: str, routeOf: Callable[[bytes], Tuple[str, str]]):
        """
        @return: C{count(request)} for the site of one listener.
        """
        counts = self.counts

        def count(request):
            face, route = routeOf(request.path)
            method = request.method.decode("latin-1")
            key = (listener, face, route, method if method in METHODS else "other", str(request.code))
            counts[key] = counts.get(key, 0) + 1

        return count


class MetricsCollector:
    """
    A C{prometheus_client} collector of the daemon's own counts, read at
    scrape time. Each source is a callable the composition root gives, so
    this module knows no component.

    @param engineStats: C{() -> dict} with C{published}, C{delivered},
        C{dropped} (L{rocketd.engine.memory.MemoryEngine.stats}).
    @param listeners: C{() -> iterable of (name, factory)}, each factory a
        L{rocketd.http.connections.ConnectionLimitFactory}
        (C{openConnections}, C{refused}, C{evicted}, C{maxConnections}).
    @param websockets: C{() -> int}: the open WebRocket WebSocket sessions.
    @param slowClosed: C{() -> int}: the WebSocket clients closed (1008)
        because their send queue was full.
    @param workerDropped: C{() -> int}: the events dropped from the
        worker backlogs.
    @param vhosts: C{() -> int}: the vhosts.
    @param requests: the L{RequestCounts}.
    @param sseStreams: C{() -> int}: the open SSE streams (RestMS pipes
        read as SSE, WebRocket worker streams).
    @param workers: C{() -> int}: the connected WebRocket backend workers.
    """

    def __init__(self, engineStats, listeners, websockets, slowClosed, workerDropped, vhosts, requests,
                 sseStreams=lambda: 0, workers=lambda: 0):
        self._sseStreams = sseStreams
        self._workers = workers
        self._engineStats = engineStats
        self._listeners = listeners
        self._websockets = websockets
        self._slowClosed = slowClosed
        self._workerDropped = workerDropped
        self._vhosts = vhosts
        self._requests = requests

    def describe(self):
        # No description: collect() runs only when scraped.
        return []

    def collect(self) -> Iterable:
        stats = self._engineStats()
        published = CounterMetricFamily(
            "rocketd_messages_published", "Messages published to feeds (both faces)."
        )
        published.add_metric([], stats.get("published", 0))
        yield published
        delivered = CounterMetricFamily(
            "rocketd_messages_delivered", "Messages the engine put in pipes and listeners."
        )
        delivered.add_metric([], stats.get("delivered", 0))
        yield delivered
        dropped = CounterMetricFamily(
            "rocketd_messages_dropped",
            "Messages dropped, by cause: limit (a pipe's depth or a feed's backlog, worker backlogs "
            "included), worker_backlog (the part of limit that fell out of WebRocket worker backlogs), "
            "slow_websocket (WebSocket clients closed with 1008 because their send queue was full: "
            "counted once per client).",
            labels=["cause"],
        )
        dropped.add_metric(["limit"], stats.get("dropped", 0))
        dropped.add_metric(["worker_backlog"], self._workerDropped())
        dropped.add_metric(["slow_websocket"], self._slowClosed())
        yield dropped

        openConnections = GaugeMetricFamily(
            "rocketd_connections_open", "Connections open, by listener.", labels=["listener"]
        )
        limit = GaugeMetricFamily(
            "rocketd_connections_limit", "The most connections a listener keeps open.", labels=["listener"]
        )
        refused = CounterMetricFamily(
            "rocketd_connections_refused",
            "Connections closed at once because the listener was at its limit.",
            labels=["listener"],
        )
        evicted = CounterMetricFamily(
            "rocketd_connections_evicted",
            "Connections waiting for their request head closed to make room for a new one.",
            labels=["listener"],
        )
        for name, factory in self._listeners():
            openConnections.add_metric([name], factory.openConnections)
            limit.add_metric([name], factory.maxConnections)
            refused.add_metric([name], factory.refused)
            evicted.add_metric([name], factory.evicted)
        yield openConnections
        yield limit
        yield refused
        yield evicted

        websockets = GaugeMetricFamily(
            "rocketd_websocket_sessions", "WebRocket WebSocket sessions open."
        )
        websockets.add_metric([], self._websockets())
        yield websockets
        sse = GaugeMetricFamily("rocketd_sse_streams", "SSE streams open (RestMS pipes, WebRocket workers).")
        sse.add_metric([], self._sseStreams())
        yield sse
        workers = GaugeMetricFamily("rocketd_workers", "WebRocket backend workers connected.")
        workers.add_metric([], self._workers())
        yield workers
        vhosts = GaugeMetricFamily("rocketd_vhosts", "WebRocket vhosts.")
        vhosts.add_metric([], self._vhosts())
        yield vhosts

        requests = CounterMetricFamily(
            "rocketd_http_requests",
            "HTTP requests answered, by listener, face, route kind, method and status.",
            labels=["listener", "face", "route", "method", "status"],
        )
        for key, count in list(self._requests.counts.items()):
            requests.add_metric(list(key), count)
        yield requests


def makeRegistry(collector: MetricsCollector) -> CollectorRegistry:
    """
    @return: a new registry with the daemon's collector and the process
        collector (CPU, memory, open files of this process).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


class MetricsResource(Resource):
    """
    C{GET /metrics}: the registry in the Prometheus text format (or
    OpenMetrics, when the scraper asks for it), generated in the reactor
    thread so that every count is read between two operations.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry):
        Resource.__init__(self)
        self._registry = registry

    def render_GET(self, request):
        accept = (request.getHeader(b"Accept") or b"").decode("latin-1")
        encoder, contentType = choose_encoder(accept)
        body = encoder(self._registry)
        request.setHeader(b"Content-Type", contentType.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return body

    def render_HEAD(self, request):
        return self.render_GET(request)


class OpenRoutes(Resource):
    """
    An admin listener's root: a few first segments (C{metrics},
    C{healthz}, C{readyz}) served without the cookie; every other path
    goes, whole, to the guarded admin API.
    """

    def __init__(self, guarded: Resource, open: Dict[bytes, Resource]):
        Resource.__init__(self)
        self._guarded = guarded
        self._open = open

    def getChild(self, name, request):
        resource = self._open.get(name)
        if resource is not None and not request.postpath:
            return resource
        # Hand the whole path to the admin API: put back the segment that
        # traversal has just taken.
        request.postpath.insert(0, request.prepath.pop())
        return self._guarded

    def render(self, request):
        return self._guarded.render(request)
