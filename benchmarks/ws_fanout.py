"""
WebRocket fan-out: delivered WebSocket messages per second, for one channel
with many subscribers.

C{--subscribers} WebSockets (default 100) subscribe to one channel of a
real daemon; the backend fires events on it (C{POST
/:vhost/channels/:name/events}) over C{--connections} keep-alive
connections, each sending its next request when the previous one is
answered (default 8; with one, the lock-step cycle). Every subscriber must
receive every event exactly once, all in the same order (with one firing
connection: the order fired). The figure is the number of messages the
subscribers received, divided by the time from the first fire to the last
delivery.

    python benchmarks/ws_fanout.py [--subscribers N] [--count EVENTS]
                                   [--seconds S] [--connections C]

It starts C{twistd -n rocketd} on free loopback ports with a vhost declared
in a temporary config file, and stops it by its pid. Firing is bounded by
--count and --seconds, waiting for deliveries by --seconds more. Exit
status 1 if any request failed or any message was lost, duplicated or out
of order. The subscribers run in this process, on the same machine: on a
small machine they share its CPUs with the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import sys
import time
from array import array

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.webrocket_backend import Connection, startDaemon, stopDaemon
from benchmarks.wire import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameDecoder,
    encodeFrame,
    upgradeRequest,
    websocketAccept,
    websocketKey,
)

_SEQUENCE = re.compile(rb'"n":(\d+)')


class Subscriber(asyncio.Protocol):
    """One WebSocket subscribed to the channel; checks what it receives."""

    def __init__(self, port: int, channel: str):
        self.channel = channel
        self.key = websocketKey()
        self.request = upgradeRequest("/bench", f"127.0.0.1:{port}", self.key)
        self.subscribed = asyncio.get_running_loop().create_future()
        self.frames = FrameDecoder()
        self.transport = None
        self.head = b""
        self.open = False
        self.numbers = array("l")  # the event numbers, in arrival order
        self.received = 0
        self.errors = []
        self.last = 0.0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        if not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError("the server closed a subscriber before it subscribed"))

    def data_received(self, data):
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            accept = "sec-websocket-accept: " + websocketAccept(self.key)
            if not head.startswith(b"HTTP/1.1 101") or accept.lower().encode() not in head.lower():
                self.subscribed.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.open = True
        for opcode, payload in self.frames.feed(data):
            if opcode == OP_TEXT:
                self.message(payload)
            elif opcode == OP_PING:
                self.transport.write(encodeFrame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.errors.append(f"closed by the server: {payload[:2].hex()} {payload[2:]!r}")

    def message(self, payload: bytes):
        if self.subscribed.done():
            match = _SEQUENCE.search(payload)
            self.numbers.append(int(match.group(1)) if match else -1)
            self.received += 1
            self.last = time.perf_counter()
            return
        event = json.loads(payload)
        if ":connected" in event:
            body = json.dumps({"subscribe": {"channel": self.channel}}).encode()
            self.transport.write(encodeFrame(OP_TEXT, body))
        elif ":subscribed" in event:
            self.subscribed.set_result(None)
        else:
            self.subscribed.set_exception(RuntimeError(f"subscribing failed: {event}"))


async def run(port: int, auth: bytes, subscribers: int, count: int, seconds: float, connections: int):
    loop = asyncio.get_running_loop()
    setup = await Connection.open(port, auth)
    status, _ = await setup.request(b"POST", b"/bench/channels/fan")
    assert status == 202, status
    setup.close()
    clients = []
    for _ in range(subscribers):
        _, client = await loop.create_connection(lambda: Subscriber(port, "fan"), "127.0.0.1", port)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.subscribed for c in clients)), timeout=30)

    conns = [await Connection.open(port, auth) for _ in range(connections)]
    fired = failed = 0
    numbers = iter(range(count))
    start = time.perf_counter()
    deadline = start + seconds

    async def fire(conn):
        nonlocal fired, failed
        for n in numbers:
            if time.perf_counter() >= deadline:
                break
            body = json.dumps({"trigger": {"event": "tick", "data": {"n": n, "text": "x" * 64}}}).encode()
            status, _ = await conn.request(b"POST", b"/bench/channels/fan/events", body)
            fired += 1
            if status != 202:
                failed += 1

    # Each connection fires the next number when its request is answered.
    await asyncio.gather(*(fire(c) for c in conns))
    fireTime = time.perf_counter() - start
    expected = fired - failed
    waitUntil = time.perf_counter() + seconds
    while time.perf_counter() < waitUntil and any(c.received < expected for c in clients):
        await asyncio.sleep(0.01)
    end = max([c.last for c in clients] + [start])
    for c in conns:
        c.close()
    for c in clients:
        c.transport.close()
    return clients, fired, failed, fireTime, end - start


def check(clients, events: int, ordered: bool):
    """
    @return: what is wrong: a subscriber that missed or got twice an
        event, or saw them in another order than the first subscriber
        (with one firing connection: another order than the firing one).
    """
    errors = [e for c in clients for e in c.errors]
    reference = clients[0].numbers if clients else array("l")
    if ordered:
        reference = array("l", range(events))
    for i, client in enumerate(clients):
        numbers = client.numbers
        if numbers == reference:
            continue
        if sorted(numbers) != list(range(events)):
            seen = set(numbers)
            errors.append(
                f"subscriber {i}: {events - len(seen)} events missing, {len(numbers) - len(seen)} duplicated"
            )
        else:
            errors.append(f"subscriber {i}: events in another order")
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100, help="WebSocket subscribers (default 100)")
    parser.add_argument("--count", type=int, default=2000, help="events fired at most (default 2000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="longest firing time (default 20)")
    parser.add_argument("--connections", type=int, default=8, help="firing connections (default 8)")
    args = parser.parse_args(argv)

    token = secrets.token_hex(20)
    proc, port, state = startDaemon(token)
    auth = b"Basic " + base64.b64encode(b"wr:" + token.encode())
    try:
        clients, fired, failed, fireTime, elapsed = asyncio.run(
            run(port, auth, args.subscribers, args.count, args.seconds, args.connections)
        )
    finally:
        stopDaemon(proc, state)

    expected = (fired - failed) * len(clients)
    delivered = sum(c.received for c in clients)
    errors = check(clients, fired - failed, ordered=args.connections == 1)
    print(f"subscribers              {len(clients)}")
    print(f"events fired             {fired} in {fireTime:.2f} s ({fired / fireTime:.0f}/s), {failed} failed")
    print(f"messages delivered       {delivered} of {expected}")
    print(f"delivered messages/s     {delivered / elapsed:.0f} (first fire to last delivery, {elapsed:.2f} s)")
    lost = expected - delivered
    print(f"lost                     {max(lost, 0)}")
    print(f"subscribers in error     {len(errors)}")
    for error in errors[:5]:
        print(f"  {error}")
    return 1 if failed or lost or errors else 0


if __name__ == "__main__":
    sys.exit(main())
