"""
W4: RestMS fifo round trips against a real daemon.

One round trip is the cycle a RestMS consumer runs for each message: the
publisher POSTs it to a fanout feed, the consumer's asynclet GET answers
with it, the consumer DELETEs it and follows the C{Link: rel="next"}
header to the next asynclet (no extra request). With several pipes joined
to the feed, every message makes one round trip per pipe.

The publisher (one keep-alive connection) runs ahead of the slowest
consumer by at most C{--window} messages, and each pipe's consumer has its
own keep-alive connection, so publishing and consuming overlap as they
would between separate applications; C{--window 1} is the lock-step cycle
(post, get, delete, post...). Every message must reach every pipe once,
intact and in order.

    python benchmarks/restms_fifo.py [--count N] [--seconds S] [--pipes P]
                                     [--window W] [--url http://127.0.0.1:PORT]

Without C{--url} it starts C{twistd -n rocketd} on a free loopback port and
stops it by its pid afterwards (with the project's C{.venv} if the Python
that runs this cannot run rocketd, as C{benchmarks/run.py} does). Exit status 1 if any message was lost,
duplicated, corrupt or out of order, or any request failed.

The suite (C{benchmarks/run.py}) runs the same code in its load client
process (C{"mode": "fifo"}), through L{prepare} and L{measure}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from array import array
from typing import List

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.loadclient import ConnectionLost, HTTPConnection, connectHTTP, pathOf
from benchmarks.wire import fillers, formatRequest, makePayload, payloadPattern

JSON = "application/restms+json"
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
#: The longest one asynclet GET waits before the consumer asks again.
LONG_POLL = 5


class FifoState:
    """A feed, its pipes and the connections that drive them."""

    def __init__(self, host: str, port: int, feed: str, size: int):
        self.host = host
        self.port = port
        self.hostHeader = f"{host}:{port}"
        self.feed = feed
        self.size = size
        self.publisher: HTTPConnection = None
        self.consumers: List[HTTPConnection] = []
        self.asynclets: List[str] = []


async def _request(conn, method, path, host, headers=None, body=None, ok=(200,)):
    response = await conn.request(formatRequest(method, path, host, headers or {}, body))
    if response.status not in ok:
        raise RuntimeError(f"{method} {path} answered {response.status}: {response.body[:200]!r}")
    return response


async def prepare(host: str, port: int, pipes: int, size: int, feed: str) -> FifoState:
    """
    Make a fanout feed and C{pipes} fifo pipes joined to it, and open the
    connections.

    @return: the L{FifoState}.
    """
    state = FifoState(host, port, feed, size)
    conn = state.publisher = await connectHTTP(host, port)
    h = state.hostHeader
    headers = {"Content-Type": JSON, "Accept": JSON}
    await _request(conn, "POST", "/restms/domain/", h, headers,
                   json.dumps({"restms": {"feed": [{"type": "fanout", "name": feed}]}}).encode(), (200, 201))
    for _ in range(pipes):
        response = await _request(conn, "POST", "/restms/domain/", h, headers,
                                  json.dumps({"restms": {"pipe": [{"type": "fifo"}]}}).encode(), (201,))
        pipe = pathOf(response.headers["location"])
        await _request(conn, "POST", pipe, h, headers,
                       json.dumps({"restms": {"join": [{"address": "*", "feed": "/restms/feed/" + feed}]}}).encode(),
                       (200, 201))
        response = await _request(conn, "GET", pipe, h, {"Accept": JSON})
        messages = json.loads(response.body)["restms"]["pipe"][0].get("message", [])
        asynclet = [m["href"] for m in messages if m.get("async") == "1"]
        if len(asynclet) != 1:
            raise RuntimeError(f"the pipe lists no single asynclet: {response.body[:300]!r}")
        state.asynclets.append(pathOf(asynclet[0]))
        state.consumers.append(await connectHTTP(host, port))
    return state


async def measure(state: FifoState, count: int, window: int, deadline: float) -> dict:
    """
    Run up to C{count} round trips per pipe, until C{deadline}
    (C{time.monotonic()}).

    @return: the figures: C{published}, C{roundTrips}, C{missing},
        C{duplicates}, C{corrupt}, C{outOfOrder}, C{errors},
        C{firstPublish} and C{lastDelete} (C{time.time_ns()}), and
        C{latencies} (post to asynclet answer, an C{array('q')} of
        nanoseconds).
    """
    pattern = payloadPattern(state.size)
    table = fillers(state.size)
    pipes = len(state.consumers)
    consumed = [0] * pipes
    moved = asyncio.Event()
    errors: List[str] = []
    counters = {"published": 0, "duplicates": 0, "corrupt": 0, "outOfOrder": 0, "first": 0, "last": 0}
    latencies = array("q")
    h = state.hostHeader
    post = formatRequest("POST", "/restms/feed/" + state.feed, h, {"Content-Type": JSON})
    prefix = b'{"restms":{"message":[{"address":"m","content":[{"type":"text/plain","$text":"'
    suffix = b'"}]}]}}'
    post = post[:-2] + b"Content-Length: %d\r\n\r\n" % (len(prefix) + state.size + len(suffix))

    async def publisher():
        for sequence in range(count):
            while sequence - min(consumed) >= window and not errors:
                if time.monotonic() > deadline:
                    return
                moved.clear()
                try:
                    await asyncio.wait_for(moved.wait(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    return
            if errors or time.monotonic() > deadline:
                return
            sent = time.time_ns()
            if not counters["first"]:
                counters["first"] = sent
            response = await state.publisher.request(post + prefix + makePayload(sequence, sent, state.size) + suffix)
            if response.status != 200:
                errors.append(f"publishing answered {response.status}: {response.body[:200]!r}")
                return
            counters["published"] += 1

    async def consumer(index):
        conn = state.consumers[index]
        uri = state.asynclets[index]
        get = {"Accept": JSON}
        for expected in range(count):
            while True:
                if errors or time.monotonic() > deadline:
                    return
                response = await conn.request(formatRequest("GET", f"{uri}?timeout={LONG_POLL}", h, get))
                if response.status != 204:
                    break
            now = time.time_ns()
            if response.status != 200:
                errors.append(f"the asynclet answered {response.status}: {response.body[:200]!r}")
                return
            found = pattern.findall(response.body)
            if len(found) != 1:
                counters["corrupt"] += 1
            for sequence, timestamp, filler in found:
                sequence = int(sequence)
                if filler != table[sequence % 26]:
                    counters["corrupt"] += 1
                elif sequence < expected:
                    counters["duplicates"] += 1
                elif sequence > expected:
                    counters["outOfOrder"] += 1
                else:
                    latencies.append(now - int(timestamp))
            link = _LINK_NEXT.search(response.headers.get("link", ""))
            response = await conn.request(formatRequest("DELETE", uri, h))
            if response.status != 200:
                errors.append(f"deleting a message answered {response.status}")
                return
            if not link:
                errors.append("a message came without a Link rel=next header")
                return
            uri = pathOf(link.group(1))
            consumed[index] = expected + 1
            counters["last"] = time.time_ns()
            moved.set()

    try:
        await asyncio.gather(publisher(), *(consumer(i) for i in range(pipes)))
    except ConnectionLost as e:
        errors.append(str(e))
    published = counters["published"]
    trips = sum(consumed)
    return {
        "published": published,
        "roundTrips": trips,
        "pipes": pipes,
        "missing": published * pipes - len(latencies),
        "duplicates": counters["duplicates"],
        "corrupt": counters["corrupt"],
        "outOfOrder": counters["outOfOrder"],
        "errors": errors,
        "firstPublish": counters["first"],
        "lastDelete": counters["last"],
        "latencies": latencies,
    }


def close(state: FifoState) -> None:
    for conn in [state.publisher, *state.consumers]:
        if conn is not None:
            conn.close()


def summarize(result: dict) -> dict:
    """@return: rates and latency percentiles of a L{measure} result."""
    elapsed = max(1, result["lastDelete"] - result["firstPublish"]) / 1e9
    ordered = sorted(result["latencies"])

    def percentile(p):
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1e3 if ordered else float("nan")

    return {
        "elapsed": elapsed,
        "messagesPerSecond": result["published"] / elapsed,
        "roundTripsPerSecond": result["roundTrips"] / elapsed,
        "p50us": percentile(0.50),
        "p99us": percentile(0.99),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--count", type=int, default=5000, help="messages to publish at most (default 5000)")
    p.add_argument("--seconds", type=float, default=30.0, help="time limit (default 30)")
    p.add_argument("--pipes", type=int, default=1, help="fifo pipes joined to the feed (default 1)")
    p.add_argument("--window", type=int, default=32,
                   help="how far the publisher may run ahead of the slowest consumer (default 32; 1 = lock step)")
    p.add_argument("--size", type=int, default=100, help="payload bytes (default 100)")
    p.add_argument("--url", help="an already running daemon, e.g. http://127.0.0.1:8080")
    args = p.parse_args(argv)
    server = None
    if args.url:
        parts = args.url.split("//", 1)[-1].rstrip("/").split(":")
        host, port = parts[0], int(parts[1]) if len(parts) > 1 else 80
    else:
        import tempfile

        from benchmarks.servers import RocketdServer, useProjectPython

        stop = useProjectPython("benchmarks/restms_fifo.py", sys.argv[1:] if argv is None else list(argv))
        if stop is not None:
            print(stop, file=sys.stderr)
            return 2
        server = RocketdServer(tempfile.mkdtemp(prefix="rocketd-fifo-"))
        server.start()
        host, port = "127.0.0.1", server.port

    async def go():
        state = await prepare(host, port, args.pipes, args.size, f"fifo-{os.getpid()}-{time.time_ns()}")
        try:
            return await measure(state, args.count, args.window, time.monotonic() + args.seconds)
        finally:
            close(state)

    try:
        result = asyncio.run(go())
    finally:
        if server is not None:
            server.stop()
            server.cleanup()
    figures = summarize(result)
    print(f"pipes={args.pipes} window={args.window} published={result['published']} "
          f"round_trips={result['roundTrips']} elapsed={figures['elapsed']:.2f}s")
    print(f"messages/s={figures['messagesPerSecond']:.0f} round_trips/s={figures['roundTripsPerSecond']:.0f} "
          f"latency p50={figures['p50us']:.0f}us p99={figures['p99us']:.0f}us")
    bad = {k: result[k] for k in ("missing", "duplicates", "corrupt", "outOfOrder") if result[k]}
    if bad or result["errors"]:
        print(f"INVALID: {bad} {result['errors'][:3]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
