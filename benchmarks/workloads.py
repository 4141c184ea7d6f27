"""
The workloads, each defined once for both servers: what to set up, what
the load clients publish and subscribe to, and which figures come out.

  - W1 fan-out: one channel, N subscribers (WebSocket or SSE), M messages
    published over C keep-alive connections, flat out and paced.
  - W2 publish-only: no subscribers.
  - W3 idle connections: N idle subscribers, server RSS per connection.
  - W4 RestMS fifo round trips (rocketd only).

Each function returns a L{Run}: the figures of one run on one server.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from benchmarks import driver
from benchmarks.servers import HOST, VHOST, NchanServer, RocketdServer, Server
from benchmarks.wire import encodeFrame, upgradeRequest, websocketKey

TRANSPORTS = ("ws", "sse")


@dataclass
class Options:
    """Every workload parameter (the command line's flags)."""

    subscribers: int = 100
    messages: int = 5000
    size: int = 100
    connections: int = 8
    rate: float = 500.0
    pacedMessages: int = 5000
    publishMessages: int = 20000
    idle: int = 5000
    fifoMessages: int = 5000
    fifoPipes: tuple = (1, 10)
    fifoWindow: int = 32
    clientProcesses: int = 2
    seconds: float = 120.0
    #: Where to write a py-spy profile of the server during the measured
    #: run (not the warm-up), or None.
    profile: Optional[str] = None


@dataclass
class Run:
    """
    One run of one workload on one server.

    @ivar figures: metric name to value.
    @ivar problems: why the run is invalid; empty if valid.
    @ivar pending: why the run could not happen (a missing feature); the
        figures are then empty.
    @ivar serverLoad: the server's CPU seconds per wall second.
    @ivar clientLoad: the busiest load client's CPU seconds per wall second.
    @ivar clientsLoad: all load client processes' CPU seconds per wall second.
    @ivar otherLoad: the CPU seconds per wall second of everything else
        on the machine during the run (noise).
    """

    figures: Dict[str, float] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    pending: str = ""
    serverLoad: float = 0.0
    clientLoad: float = 0.0
    clientsLoad: float = 0.0
    otherLoad: float = 0.0

    @property
    def valid(self) -> bool:
        return not self.problems and not self.pending


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.time_ns() % 10**12}"


def _request(port: int, method: str, path: str, body: Optional[bytes] = None, headers: Dict[str, str] = {}):
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _check(status: int, body: bytes, expected, what: str) -> None:
    if status not in expected:
        raise RuntimeError(f"{what} answered {status}: {body[:200]!r}")


# -- what each server needs ------------------------------------------------------------


def rocketdChannel(server: RocketdServer, name: str) -> None:
    """Open a WebRocket channel in the benchmark's vhost."""
    status, body = _request(server.port, "POST", f"{VHOST}/channels/{name}",
                            headers={"Authorization": server.backendAuthorization()})
    _check(status, body, (202,), "opening a channel")


def rocketdFeed(server: RocketdServer, name: str) -> None:
    """Make a public RestMS fanout feed in the default domain."""
    status, body = _request(
        server.port, "POST", "/restms/domain/",
        json.dumps({"restms": {"feed": [{"type": "fanout", "name": name}]}}).encode(),
        {"Content-Type": "application/restms+json"},
    )
    _check(status, body, (200, 201), "creating a feed")


def publishSpec(server: Server, transport: str, channel: str, connections: int, rate=None) -> dict:
    """
    @param transport: C{"ws"} (rocketd: WebRocket fire-event) or C{"sse"}
        (rocketd: a RestMS message to a fanout feed); nchan publishes the
        same way for both.
    @return: the load client's C{publish} config.
    """
    spec = {"host": HOST, "port": server.port, "connections": connections, "rate": rate}
    if isinstance(server, NchanServer):
        spec.update(path=f"/pub?id={channel}", headers={"Content-Type": "text/plain"}, ok=[201, 202])
    elif transport == "ws":
        spec.update(
            path=f"{VHOST}/channels/{channel}/events",
            headers={"Authorization": server.backendAuthorization(), "Content-Type": "application/json"},
            bodyPrefix='{"trigger":{"event":"m","data":{"p":"',
            bodySuffix='"}}}',
            ok=[202],
        )
    else:
        spec.update(
            path=f"/restms/feed/{channel}",
            headers={"Content-Type": "application/restms+json"},
            bodyPrefix='{"restms":{"message":[{"address":"m","content":[{"type":"text/plain","$text":"',
            bodySuffix='"}]}]}}',
            ok=[200],
        )
    return spec


def subscriberGroup(server: Server, transport: str, channel: str, count: int) -> dict:
    """
    @return: a load client subscriber group: nchan's C{/sub} (WebSocket or
        EventSource); rocketd's WebRocket frontend (subscribe to the
        channel) or a RestMS stream pipe joined to the feed, read as
        C{text/event-stream}.
    """
    group = {"kind": transport, "count": count, "host": HOST, "port": server.port}
    if isinstance(server, NchanServer):
        group["path"] = f"/sub?id={channel}"
    elif transport == "ws":
        group.update(path=VHOST, webrocketChannel=channel)
    else:
        group.update(path=None, restmsPipe=f"/restms/feed/{channel}")
    return group


def prepareChannel(server: Server, transport: str, channel: str) -> None:
    """Create what the server needs before subscribing (nchan needs nothing)."""
    if isinstance(server, RocketdServer):
        if transport == "ws":
            rocketdChannel(server, channel)
        else:
            rocketdFeed(server, channel)


def probeWebSocket(server: Server, timeout: float = 5.0) -> str:
    """
    @return: "" if the server's WebSocket subscribers work, else why not
        (rocketd's frontend may not be there yet).
    """
    if not isinstance(server, RocketdServer):
        return ""
    key = websocketKey()
    try:
        with socket.create_connection((HOST, server.port), timeout=timeout) as s:
            s.sendall(upgradeRequest(VHOST, f"{HOST}:{server.port}", key))
            data = b""
            end = time.monotonic() + timeout
            while b":connected" not in data and time.monotonic() < end:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.sendall(encodeFrame(8, b"\x03\xe8"))
    except OSError as e:
        return f"no WebSocket frontend ({e})"
    if not data.startswith(b"HTTP/1.1 101"):
        status = data.split(b"\r\n", 1)[0].decode("latin-1")
        return f"no WebSocket frontend at {VHOST} ({status or 'no answer'})"
    if b":connected" not in data:
        return "the WebSocket frontend did not say :connected"
    return ""


def _split(total: int, parts: int) -> List[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _usPercentile(samples, p) -> float:
    return driver.percentile(samples, p) / 1e3


#: The warm-up before each measured run: this many messages to this many
#: subscribers on a channel of their own, so that what runs once (imports,
#: caches, the first connections) is not measured.
WARM_UP_MESSAGES = 300
WARM_UP_SUBSCRIBERS = 5


def warmUp(server: Server, transport: str, options: Options, workdir: str, subscribers: int) -> None:
    """Publish a few messages to a few subscribers (or none) of a fresh channel, unmeasured."""
    channel = _unique("warm")
    prepareChannel(server, transport, channel)
    config = {
        "count": WARM_UP_MESSAGES,
        "size": options.size,
        "seconds": options.seconds,
        "setupSeconds": options.seconds,
        "subscribers": [subscriberGroup(server, transport, channel, subscribers)] if subscribers else [],
        "publish": publishSpec(server, transport, channel, 2),
    }
    m = driver.drive(server, [config], workdir, options.seconds + 60)
    if m.problems:
        raise RuntimeError(f"the warm-up failed on {server.name}: {'; '.join(m.problems)}")


# -- W1 fan-out --------------------------------------------------------------------------------


def fanout(server: Server, transport: str, options: Options, workdir: str, paced: bool = False) -> Run:
    """
    W1: C{options.subscribers} subscribers on one channel; C{messages}
    (C{pacedMessages} at C{rate} per second when C{paced}) published over
    C{connections} keep-alive connections.

    Figures: C{deliveredPerSecond} (deliveries from the first publish to
    the last delivery), C{cpuPerDelivery} (server CPU microseconds),
    C{p50}/C{p99} (publish to delivery, microseconds), C{publishedPerSecond}
    (the publishing rate reached: a server too busy to answer publishes
    on time holds a paced publisher back).
    """
    if transport == "ws":
        why = probeWebSocket(server)
        if why:
            return Run(pending=why)
    warmUp(server, transport, options, workdir, WARM_UP_SUBSCRIBERS)
    channel = _unique("w1")
    prepareChannel(server, transport, channel)
    count = options.pacedMessages if paced else options.messages
    configs = []
    for index, share in enumerate(_split(options.subscribers, max(1, options.clientProcesses))):
        config = {
            "count": count,
            "size": options.size,
            "seconds": options.seconds,
            "setupSeconds": options.seconds,
            "subscribers": [subscriberGroup(server, transport, channel, share)] if share else [],
        }
        if index == 0:
            config["publish"] = publishSpec(server, transport, channel, options.connections,
                                            options.rate if paced else None)
        configs.append(config)
    m = driver.drive(server, configs, workdir, options.seconds * 2 + 60, profile=options.profile)
    delivered = m.total("delivered")
    elapsed = max(1, m.lastDelivery - m.firstPublish) / 1e9
    published = m.total("published")
    return Run(
        figures={
            "publishedPerSecond": (published - 1) / max(1e-9, (m.lastPublish - m.firstPublish) / 1e9),
            "deliveredPerSecond": delivered / elapsed,
            "cpuPerDelivery": m.serverCpu / delivered * 1e6 if delivered else float("nan"),
            "p50": _usPercentile(m.latencies, 0.50),
            "p99": _usPercentile(m.latencies, 0.99),
        },
        problems=m.problems,
        serverLoad=m.serverLoad,
        clientLoad=m.clientLoad,
        clientsLoad=m.clientsLoad,
        otherLoad=m.otherLoad,
    )


# -- W2 publish-only ------------------------------------------------------------------------------


def publishOnly(server: Server, transport: str, options: Options, workdir: str) -> Run:
    """
    W2: C{publishMessages} published over C{connections} connections (split
    among C{clientProcesses} client processes) to a channel nobody
    subscribes to (rocketd: C{transport} C{"ws"} is the
    WebRocket fire-event, C{"sse"} a RestMS message).

    Figures: C{publishedPerSecond}, C{p50}/C{p99} (request to response,
    microseconds), C{cpuPerPublish}.
    """
    warmUp(server, transport, options, workdir, 0)
    channel = _unique("w2")
    prepareChannel(server, transport, channel)
    # The connections and the messages are split among the client processes.
    processes = max(1, min(options.clientProcesses, options.connections))
    configs = []
    first = 0
    for connections, count in zip(_split(options.connections, processes), _split(options.publishMessages, processes)):
        spec = publishSpec(server, transport, channel, connections)
        spec.update(first=first, count=count)
        first += count
        configs.append({"count": options.publishMessages, "size": options.size, "seconds": options.seconds,
                        "publish": spec})
    m = driver.drive(server, configs, workdir, options.seconds * 2 + 60, profile=options.profile)
    published = m.total("published")
    elapsed = max(1, m.lastResponse - m.firstPublish) / 1e9
    problems = m.problems
    if published != options.publishMessages:
        problems.append(f"{options.publishMessages - published} messages not published")
    return Run(
        figures={
            "publishedPerSecond": published / elapsed,
            "cpuPerPublish": m.serverCpu / published * 1e6 if published else float("nan"),
            "p50": _usPercentile(m.publishLatencies, 0.50),
            "p99": _usPercentile(m.publishLatencies, 0.99),
        },
        problems=problems,
        serverLoad=m.serverLoad,
        clientLoad=m.clientLoad,
        clientsLoad=m.clientsLoad,
        otherLoad=m.otherLoad,
    )


# -- W3 idle connections ---------------------------------------------------------------------------

#: Connections opened and closed before the baseline, so that what the
#: first connection costs once (imports, buffers) is not counted per connection.
WARM_UP = 20


def idleConnections(server: Server, transport: str, options: Options, workdir: str) -> Run:
    """
    W3: C{options.idle} idle subscribers on one channel (rocketd SSE: each
    one a stream pipe joined to the feed, since that is what an SSE
    subscriber is).

    Figures: C{rssPerConnection} (bytes: the server's RSS once all are
    connected, minus its RSS before, over the count).
    """
    if transport == "ws":
        why = probeWebSocket(server)
        if why:
            return Run(pending=why)
    channel = _unique("w3")
    prepareChannel(server, transport, channel)

    def config(count):
        return {
            "size": options.size,
            "seconds": options.seconds,
            "setupSeconds": options.seconds,
            "subscribers": [subscriberGroup(server, transport, channel, count)],
        }

    driver.drive(server, [config(WARM_UP)], workdir, options.seconds + 60, idle=True)
    processes = max(1, options.clientProcesses)
    m = driver.drive(server, [config(n) for n in _split(options.idle, processes) if n], workdir,
                     options.seconds + 60, idle=True)
    connected = m.total("subscribers")
    problems = m.problems
    if connected != options.idle:
        problems.append(f"only {connected} of {options.idle} connected")
    return Run(
        figures={"rssPerConnection": (m.rssReady - m.rssBefore) / max(1, connected)},
        problems=problems,
    )


# -- W4 RestMS fifo round trips --------------------------------------------------------------------


def fifo(server: Server, pipes: int, options: Options, workdir: str) -> Run:
    """
    W4: RestMS fifo round trips (post, asynclet GET, DELETE) with C{pipes}
    pipes on a fanout feed (see L{benchmarks.restms_fifo}); rocketd only.

    Figures: C{roundTripsPerSecond}, C{messagesPerSecond}, C{p50}/C{p99}
    (post to asynclet answer, microseconds), C{cpuPerRoundTrip}.
    """
    def config(count):
        return {
            "mode": "fifo",
            "host": HOST,
            "port": server.port,
            "pipes": pipes,
            "window": options.fifoWindow,
            "count": count,
            "size": options.size,
            "seconds": options.seconds,
            "feed": _unique("w4"),
        }

    warm = driver.drive(server, [config(WARM_UP_MESSAGES)], workdir, options.seconds + 60)
    if warm.problems:
        raise RuntimeError(f"the warm-up failed: {'; '.join(warm.problems)}")
    m = driver.drive(server, [config(options.fifoMessages)], workdir, options.seconds * 2 + 60,
                     profile=options.profile)
    result = m.results[0]
    trips = result["roundTrips"]
    elapsed = max(1, result["lastDelete"] - result["firstPublish"]) / 1e9
    problems = m.problems
    for key in ("outOfOrder",):
        if result.get(key):
            problems.append(f"{result[key]} {key}")
    return Run(
        figures={
            "roundTripsPerSecond": trips / elapsed,
            "messagesPerSecond": result["published"] / elapsed,
            "cpuPerRoundTrip": m.serverCpu / trips * 1e6 if trips else float("nan"),
            "p50": _usPercentile(m.latencies, 0.50),
            "p99": _usPercentile(m.latencies, 0.99),
        },
        problems=problems,
        serverLoad=m.serverLoad,
        clientLoad=m.clientLoad,
        clientsLoad=m.clientsLoad,
        otherLoad=m.otherLoad,
    )
