"""
The load client: publishers and subscribers on raw asyncio sockets, the
same code against every server.

It runs as a child process of C{benchmarks/run.py}, so that its CPU time
is its own and apart from the server's:

    python -m benchmarks.loadclient CONFIG.json

and talks with its parent in JSON lines: it prints C{{"ready": {...}}} once
every subscriber is connected (and subscribed), waits for a C{go} line on
stdin (unless the config says C{"go": true}), publishes, waits until every
subscriber has every message (or the time limit), prints
C{{"result": {...}}}, and with C{"idle": true} keeps its connections open
until a C{stop} line (or the time limit). Latencies go to binary files of
native 64-bit integers (nanoseconds) named in the config, so that the
parent can merge several processes' samples exactly.

The config (a JSON object; see L{run} for the defaults)::

    {"count": 5000, "size": 100, "seconds": 60, "setupSeconds": 60,
     "publish": {"host": "127.0.0.1", "port": 8080, "connections": 8,
                 "rate": null, "method": "POST", "path": "/pub?id=c",
                 "first": 0, "count": (the config's count; sequences first to first + count - 1),
                 "headers": {...}, "bodyPrefix": "", "bodySuffix": "",
                 "ok": [200, 201, 202]},
     "subscribers": [{"kind": "sse" | "ws", "count": 100, "host": ..., "port": ...,
                      "path": "/sub?id=c", "headers": {...},
                      "restmsPipe": "/restms/feed/NAME" (SSE: make a stream pipe joined to it first),
                      "webrocketChannel": "c" (WS: subscribe to it after ":connected")}],
     "latencyFile": "...", "publishLatencyFile": "...", "idle": false, "go": false}

Everything is bounded: connections by the config's counts, each phase by
its time limit.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
import time
from array import array
from typing import Dict, List, NamedTuple, Optional
from urllib.parse import urlsplit

from benchmarks.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ChunkedDecoder,
    EventStreamSplitter,
    FrameDecoder,
    Tally,
    encodeFrame,
    formatRequest,
    makePayload,
    parseHead,
    upgradeRequest,
    websocketAccept,
    websocketKey,
)

time_ns = time.time_ns

#: How many subscribers connect (and set up) at the same time.
CONNECT_CONCURRENCY = 100
#: Statuses without a body.
_NO_BODY = frozenset({204, 304})


class Response(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes


class ConnectionLost(Exception):
    """The server closed a connection the benchmark still needed."""


class HTTPConnection(asyncio.Protocol):
    """
    One keep-alive HTTP/1.1 connection, one request at a time.

    @ivar closed: whether the connection has gone.
    """

    def __init__(self):
        self.transport = None
        self.closed = False
        self._buffer = b""
        self._waiter: Optional[asyncio.Future] = None
        self._head = None
        self._length = None
        self._chunked: Optional[ChunkedDecoder] = None
        self._chunks: List[bytes] = []

    def request(self, data: bytes) -> asyncio.Future:
        """
        Send one formatted request (see L{benchmarks.wire.formatRequest}).

        @return: a Future that resolves with the L{Response}, or fails with
            L{ConnectionLost}.
        """
        if self._waiter is not None:
            raise RuntimeError("one request at a time on an HTTPConnection")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if self.closed:
            self._fail()
        else:
            self.transport.write(data)
        return waiter

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self._waiter is None:
            self._buffer += data
            return
        data = self._buffer + data if self._buffer else data
        self._buffer = b""
        while data and self._waiter is not None:
            data = self._parse(data)
        if data:
            self._buffer = data

    def _parse(self, data: bytes) -> bytes:
        if self._head is None:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = data
                return b""
            status, headers = parseHead(data[:end])
            data = data[end + 4 :]
            self._head = (status, headers)
            if status in _NO_BODY or status < 200:
                self._length = 0
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked = ChunkedDecoder()
            else:
                self._length = int(headers.get("content-length", "0"))
            self._chunks = []
        if self._chunked is not None:
            chunks, rest = self._chunked.feed(data)
            self._chunks.extend(chunks)
            if not self._chunked.done:
                return b""
            self._finish(b"".join(self._chunks))
            return rest
        have = sum(map(len, self._chunks))
        need = self._length - have
        if len(data) < need:
            self._chunks.append(data)
            return b""
        self._chunks.append(data[:need])
        self._finish(b"".join(self._chunks))
        return data[need:]

    def _finish(self, body: bytes) -> None:
        status, headers = self._head
        self._head = None
        self._chunked = None
        self._chunks = []
        waiter, self._waiter = self._waiter, None
        if not waiter.done():
            waiter.set_result(Response(status, headers, body))

    def _fail(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionLost("the server closed a keep-alive connection"))

    def connection_lost(self, exc):
        self.closed = True
        self._fail()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connectHTTP(host: str, port: int) -> HTTPConnection:
    """@return: a connected L{HTTPConnection}."""
    _, protocol = await asyncio.get_running_loop().create_connection(HTTPConnection, host, port)
    return protocol


def pathOf(uri: str) -> str:
    """@return: the path and query of an absolute URI or a path."""
    if uri.startswith("/"):
        return uri
    parts = urlsplit(uri)
    return parts.path + ("?" + parts.query if parts.query else "")


# -- subscribers -----------------------------------------------------------------


class Progress:
    """
    Counts new deliveries across a process's subscribers and wakes the
    waiter when all have arrived.
    """

    def __init__(self, expected: int):
        self.expected = expected
        self.delivered = 0
        self.done = asyncio.Event()
        if expected == 0:
            self.done.set()

    def add(self, new: int) -> None:
        self.delivered += new
        if self.delivered >= self.expected:
            self.done.set()


class _Subscriber(asyncio.Protocol):
    """What both subscriber kinds share: the handshake state, the tally."""

    def __init__(self, request: bytes, tally: Optional[Tally], progress: Optional[Progress]):
        self.request = request
        self.tally = tally
        self.progress = progress
        self.transport = None
        self.ready = asyncio.get_running_loop().create_future()
        self.lost = False
        self.closing = False
        self._head = b""
        self._inBody = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionLost("the server closed a subscriber before it was ready"))

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        self.transport.close()

    def _readHead(self, data: bytes) -> Optional[bytes]:
        """@return: the body bytes after the head, or None while it is incomplete."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return None
        status, headers = parseHead(self._head[:end])
        rest = self._head[end + 4 :]
        self._head = b""
        self._inBody = True
        self.onHead(status, headers)
        return rest

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class SSESubscriber(_Subscriber):
    """
    A server-sent events subscriber: ready when the first body bytes (the
    server's opening comment) arrive.
    """

    def __init__(self, request, tally, progress):
        _Subscriber.__init__(self, request, tally, progress)
        self._chunked: Optional[ChunkedDecoder] = None
        self._events = EventStreamSplitter()

    def onHead(self, status, headers) -> None:
        if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
            self._fail(f"the event stream answered {status} {headers.get('content-type')}")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = ChunkedDecoder()

    def data_received(self, data):
        now = time_ns()
        if not self._inBody:
            data = self._readHead(data)
            if not data:
                return
        if self._chunked is not None:
            chunks, _ = self._chunked.feed(data)
            data = b"".join(chunks)
            if not data:
                return
        if not self.ready.done():
            self.ready.set_result(None)
        complete, frames = self._events.feed(data)
        if frames and self.tally is not None:
            self.progress.add(self.tally.add(complete, frames, now))


class WSSubscriber(_Subscriber):
    """
    A WebSocket subscriber. Without a channel it is ready at the 101;
    with one (the WebRocket protocol) it subscribes when the server says
    C{:connected} and is ready at C{:subscribed}.
    """

    def __init__(self, path, host, headers, channel, tally, progress):
        self._key = websocketKey()
        _Subscriber.__init__(self, upgradeRequest(path, host, self._key, headers), tally, progress)
        self._channel = channel
        self._frames = FrameDecoder()

    def onHead(self, status, headers) -> None:
        if status != 101 or headers.get("sec-websocket-accept") != websocketAccept(self._key):
            self._fail(f"the WebSocket handshake answered {status}")
        elif self._channel is None:
            self.ready.set_result(None)

    def send(self, opcode: int, payload: bytes) -> None:
        self.transport.write(encodeFrame(opcode, payload))

    def data_received(self, data):
        now = time_ns()
        if not self._inBody:
            data = self._readHead(data)
            if not data:
                return
        frames = self._frames.feed(data)
        texts = []
        for opcode, payload in frames:
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if self.ready.done():
                    texts.append(payload)
                else:
                    self._handshake(payload)
            elif opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                if not self.closing:
                    self._fail(f"the server closed the WebSocket: {payload[:2].hex()} {payload[2:80]!r}")
                self.transport.close()
        if texts and self.tally is not None:
            self.progress.add(self.tally.add(b"\n".join(texts), len(texts), now))

    def _handshake(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return self._fail(f"not JSON before subscribing: {payload[:80]!r}")
        if ":connected" in event:
            self.send(OP_TEXT, json.dumps({"subscribe": {"channel": self._channel}}).encode())
        elif ":subscribed" in event:
            self.ready.set_result(None)
        elif ":error" in event:
            self._fail(f"subscribing failed: {event[':error']}")

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.lost:
            self.send(OP_CLOSE, b"\x03\xe8")
            self.transport.close()


async def restmsStreamPipe(conn: HTTPConnection, host: str, feed: str) -> str:
    """
    Make a RestMS stream pipe joined to C{feed} (a path) with address C{*}.

    @return: the pipe's path.
    """
    json_ = {"Content-Type": "application/restms+json", "Accept": "application/restms+json"}
    body = json.dumps({"restms": {"pipe": [{"type": "stream"}]}}).encode()
    response = await conn.request(formatRequest("POST", "/restms/domain/", host, json_, body))
    if response.status != 201:
        raise RuntimeError(f"creating a stream pipe answered {response.status}: {response.body[:200]!r}")
    pipe = pathOf(response.headers["location"])
    body = json.dumps({"restms": {"join": [{"address": "*", "feed": feed}]}}).encode()
    response = await conn.request(formatRequest("POST", pipe, host, json_, body))
    if response.status not in (200, 201):
        raise RuntimeError(f"joining a stream pipe answered {response.status}: {response.body[:200]!r}")
    return pipe


async def connectSubscribers(groups, count, size, latencies, progress, deadline) -> List[_Subscriber]:
    """
    Connect every subscriber of every group, C{CONNECT_CONCURRENCY} at a
    time, and wait until each is ready.

    @return: the subscribers.
    @raise RuntimeError: one failed, or the deadline passed.
    """
    loop = asyncio.get_running_loop()
    subscribers: List[_Subscriber] = []
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    setup: Dict[tuple, List[HTTPConnection]] = {}

    async def setupConnection(host, port):
        pool = setup.setdefault((host, port), [])
        if pool:
            return pool.pop()
        return await connectHTTP(host, port)

    async def one(group):
        host, port = group["host"], group["port"]
        hostHeader = f"{host}:{port}"
        tally = Tally(count, size, latencies) if progress is not None else None
        async with limit:
            path = group["path"]
            if group.get("restmsPipe"):
                conn = await setupConnection(host, port)
                try:
                    path = await restmsStreamPipe(conn, hostHeader, group["restmsPipe"])
                finally:
                    setup[(host, port)].append(conn)
            headers = dict(group.get("headers", {}))
            if group["kind"] == "sse":
                headers.setdefault("Accept", "text/event-stream")
                protocol = SSESubscriber(formatRequest("GET", path, hostHeader, headers), tally, progress)
            else:
                protocol = WSSubscriber(path, hostHeader, headers, group.get("webrocketChannel"), tally, progress)
            subscribers.append(protocol)
            await loop.create_connection(lambda: protocol, host, port)
            await protocol.ready

    tasks = [one(group) for group in groups for _ in range(group["count"])]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), max(0.1, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        ready = sum(1 for s in subscribers if s.ready.done() and not s.ready.exception())
        raise RuntimeError(f"only {ready} of {len(tasks)} subscribers were ready in time") from None
    finally:
        for pool in setup.values():
            for conn in pool:
                conn.close()
    return subscribers


# -- publishers ------------------------------------------------------------------


class PublishTarget:
    """
    How to publish one payload: a request whose body is C{bodyPrefix},
    the payload, C{bodySuffix}. The head is formatted once (the payload's
    size does not change).
    """

    def __init__(self, spec: dict, size: int):
        self.host = spec["host"]
        self.port = spec["port"]
        self.ok = frozenset(spec.get("ok", (200, 201, 202)))
        self._prefix = spec.get("bodyPrefix", "").encode()
        self._suffix = spec.get("bodySuffix", "").encode()
        length = len(self._prefix) + size + len(self._suffix)
        headers = dict(spec.get("headers", {}))
        headers["Content-Length"] = str(length)
        self._head = formatRequest(spec.get("method", "POST"), spec["path"], f"{self.host}:{self.port}", headers)

    def request(self, payload: bytes) -> bytes:
        return b"".join((self._head, self._prefix, payload, self._suffix))


class PublishStats:
    def __init__(self):
        self.published = 0
        self.errors: List[str] = []
        self.first = 0
        self.last = 0
        self.lastResponse = 0
        self.latencies = array("q")


async def publish(
    target: PublishTarget, connections: int, count: int, size: int, rate, deadline, first: int = 0
) -> PublishStats:
    """
    Publish sequences C{first} to C{first + count - 1} over C{connections}
    keep-alive connections, each sending the next sequence as soon as its
    previous request is answered; with a C{rate} (messages per second, all
    connections together), the C{n}th message is sent no earlier than
    C{n/rate} seconds after the start.

    @return: the L{PublishStats} (request latencies in nanoseconds).
    """
    loop = asyncio.get_running_loop()
    stats = PublishStats()
    conns = [await connectHTTP(target.host, target.port) for _ in range(connections)]
    state = {"next": first}
    stop = first + count
    start = loop.time()
    ok = target.ok

    async def run(conn):
        while not stats.errors:
            sequence = state["next"]
            if sequence >= stop or time.monotonic() > deadline:
                return
            state["next"] = sequence + 1
            if rate:
                delay = start + (sequence - first) / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent = time_ns()
            if not stats.first:
                stats.first = sent
            try:
                response = await conn.request(target.request(makePayload(sequence, sent, size)))
            except ConnectionLost as e:
                stats.errors.append(str(e))
                return
            answered = time_ns()
            if response.status not in ok:
                stats.errors.append(f"publishing answered {response.status}: {response.body[:200]!r}")
                return
            stats.latencies.append(answered - sent)
            stats.published += 1
            stats.last = sent
            stats.lastResponse = answered

    try:
        await asyncio.gather(*(run(conn) for conn in conns))
    finally:
        for conn in conns:
            conn.close()
    return stats


# -- the child process -------------------------------------------------------------


class _Lines:
    """stdin's lines, read by a daemon thread (it can't hold the exit up)."""

    def __init__(self, loop):
        self.queue: asyncio.Queue = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, line.strip())
        self._loop.call_soon_threadsafe(self.queue.put_nowait, "")

    async def expect(self, word: str, timeout: float) -> bool:
        """@return: whether C{word} arrived in time (end of input counts as it)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = await asyncio.wait_for(self.queue.get(), max(0.0, end - time.monotonic()))
            except asyncio.TimeoutError:
                return False
            if line == word or line == "":
                return True


def _say(kind: str, value) -> None:
    sys.stdout.write(json.dumps({kind: value}) + "\n")
    sys.stdout.flush()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(config: dict) -> dict:
    """
    Run one load client as the config says (see the module docstring).

    @return: the result (also printed).
    """
    if config.get("mode") == "fifo":
        return await _runFifo(config)
    count = config.get("count", 0)
    size = config.get("size", 100)
    idle = config.get("idle", False)
    lines = None if config.get("go") else _Lines(asyncio.get_running_loop())
    groups = config.get("subscribers", [])
    subscriberCount = sum(g["count"] for g in groups)
    latencies = array("q")
    progress = None if idle else Progress(subscriberCount * count)
    setupDeadline = time.monotonic() + config.get("setupSeconds", 60.0)
    subscribers = await connectSubscribers(groups, count, size, latencies, progress, setupDeadline)
    _say("ready", {"subscribers": len(subscribers)})
    if lines is not None and not await lines.expect("go", config.get("setupSeconds", 60.0)):
        raise RuntimeError("no 'go' from the parent in time")
    seconds = config.get("seconds", 60.0)
    deadline = time.monotonic() + seconds
    cpu0, wall0 = _cpu(), time_ns()
    stats = PublishStats()
    if config.get("publish"):
        spec = config["publish"]
        stats = await publish(
            PublishTarget(spec, size),
            spec.get("connections", 8),
            spec.get("count", count),
            size,
            spec.get("rate"),
            deadline,
            spec.get("first", 0),
        )
    if progress is not None:
        try:
            await asyncio.wait_for(progress.done.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    cpu1, wall1 = _cpu(), time_ns()
    tallies = [s.tally for s in subscribers if s.tally is not None]
    errors = list(stats.errors)
    lost = sum(1 for s in subscribers if s.lost and not s.closing)
    if lost:
        errors.append(f"{lost} subscriber connections were closed by the server")
    result = {
        "subscribers": len(subscribers),
        "expected": count * len(tallies),
        "delivered": sum(t.expected - t.missing for t in tallies),
        "missing": sum(t.missing for t in tallies),
        "duplicates": sum(t.duplicates for t in tallies),
        "corrupt": sum(t.corrupt for t in tallies),
        "published": stats.published,
        "firstPublish": stats.first,
        "lastPublish": stats.last,
        "lastResponse": stats.lastResponse,
        "lastDelivery": max((t.last for t in tallies), default=0),
        "cpu": cpu1 - cpu0,
        "wall": (wall1 - wall0) / 1e9,
        "errors": errors,
    }
    if config.get("latencyFile"):
        with open(config["latencyFile"], "wb") as f:
            latencies.tofile(f)
    if config.get("publishLatencyFile"):
        with open(config["publishLatencyFile"], "wb") as f:
            stats.latencies.tofile(f)
    _say("result", result)
    if idle and lines is not None:
        await lines.expect("stop", seconds)
    for subscriber in subscribers:
        subscriber.close()
    return result


async def _runFifo(config: dict) -> dict:
    """W4 (see L{benchmarks.restms_fifo}) with the same conversation and result fields."""
    from benchmarks import restms_fifo

    lines = None if config.get("go") else _Lines(asyncio.get_running_loop())
    seconds = config.get("seconds", 60.0)
    state = await asyncio.wait_for(
        restms_fifo.prepare(config["host"], config["port"], config["pipes"], config.get("size", 100), config["feed"]),
        config.get("setupSeconds", 60.0),
    )
    try:
        _say("ready", {"pipes": config["pipes"]})
        if lines is not None and not await lines.expect("go", config.get("setupSeconds", 60.0)):
            raise RuntimeError("no 'go' from the parent in time")
        cpu0, wall0 = _cpu(), time_ns()
        out = await restms_fifo.measure(state, config["count"], config.get("window", 32), time.monotonic() + seconds)
        cpu1, wall1 = _cpu(), time_ns()
    finally:
        restms_fifo.close(state)
    latencies = out.pop("latencies")
    if config.get("latencyFile"):
        with open(config["latencyFile"], "wb") as f:
            latencies.tofile(f)
    result = dict(
        out,
        subscribers=config["pipes"],
        expected=config["count"] * config["pipes"],
        delivered=len(latencies),
        lastDelivery=out["lastDelete"],
        lastResponse=out["lastDelete"],
        cpu=cpu1 - cpu0,
        wall=(wall1 - wall0) / 1e9,
    )
    if result["published"] != config["count"]:
        result["errors"].append(f"only {result['published']} of {config['count']} messages published in time")
    _say("result", result)
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m benchmarks.loadclient CONFIG.json\n")
        return 2
    with open(argv[0]) as f:
        config = json.load(f)
    try:
        asyncio.run(run(config))
    except Exception as e:
        _say("error", f"{type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
