"""
WebRocket backend figures against a real daemon.

1. fire-event requests per second: C{POST /:vhost/channels/:name/events}
   over C{--connections} keep-alive connections, each sending its next
   request when the previous one is answered (202).
2. events per second one SSE worker receives: one C{GET /:vhost/events}
   worker, while the backend triggers events (C{POST /:vhost/events}) over
   the same connections; every event id must arrive exactly once, in order.

    python benchmarks/webrocket_backend.py [--count N] [--seconds S]
                                           [--connections C]

It starts C{twistd -n rocketd} on free loopback ports with a vhost
declared in a temporary config file, and stops it by its pid. Every loop is
bounded by --count and --seconds. Exit status 1 if any request failed or
any event was lost, duplicated or out of order.
"""

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TWISTD = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startDaemon(token):
    state = tempfile.mkdtemp(prefix="rocketd-wrbench-")
    config = os.path.join(state, "rocketd.conf")
    with open(config, "w") as f:
        f.write("[vhost /bench]\ntoken = %s\n" % token)
    port = freePort()
    argv = TWISTD + ["-n", "--pidfile=", "--logfile", os.path.join(state, "twistd.log"), "rocketd",
                     "--config", config, "--listen", "tcp:%d:interface=127.0.0.1" % port,
                     "--admin", "tcp:%d:interface=127.0.0.1" % freePort(), "--state-dir", state]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [CHECKOUT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port, state
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("rocketd did not start; see %s" % state)


def stopDaemon(proc, state):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(state, ignore_errors=True)


class Connection:
    """A keep-alive HTTP/1.1 connection sending one request at a time."""

    def __init__(self, reader, writer, auth):
        self.reader, self.writer, self.auth = reader, writer, auth

    @classmethod
    async def open(cls, port, auth):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, auth)

    async def request(self, method, path, body=b""):
        self.writer.write(
            b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (method, path, self.auth, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        return status, await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


async def fireEvents(port, auth, count, seconds, connections):
    """The first figure: fire-event requests answered per second."""
    conns = [await Connection.open(port, auth) for _ in range(connections)]
    status, _ = await conns[0].request(b"POST", b"/bench/channels/room")
    assert status == 202, status
    body = json.dumps({"trigger": {"event": "hello", "data": {"text": "x" * 64}}}).encode()
    sent = failed = 0
    deadline = time.perf_counter() + seconds

    async def loop(conn):
        nonlocal sent, failed
        while sent < count and time.perf_counter() < deadline:
            sent += 1
            status, _ = await conn.request(b"POST", b"/bench/channels/room/events", body)
            if status != 202:
                failed += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return sent, failed, elapsed


async def workerEvents(port, auth, count, seconds, connections):
    """The second figure: events per second one SSE worker receives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bench/events?filter=room/.* HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n\r\n" % auth)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    chunked = b"chunked" in head.lower()
    conns = [await Connection.open(port, auth) for _ in range(connections)]
    body = json.dumps({"trigger": {"event": "hello", "channel": "room", "data": {"text": "x" * 64}}}).encode()
    triggered = failed = 0
    deadline = time.perf_counter() + seconds
    ids = []

    async def trigger(conn):
        nonlocal triggered, failed
        while triggered < count and time.perf_counter() < deadline:
            triggered += 1
            status, _ = await conn.request(b"POST", b"/bench/events", body)
            if status != 202:
                failed += 1

    async def receive():
        raw = payload = b""
        while len(ids) < count and time.perf_counter() < deadline + 5:
            try:
                data = await asyncio.wait_for(reader.read(65536), timeout=1)
            except asyncio.TimeoutError:
                if (triggered >= count or time.perf_counter() >= deadline) and len(ids) >= triggered - failed:
                    return
                continue
            if not data:
                return
            if chunked:
                raw += data
                while True:  # take every whole chunk out of the raw bytes
                    eol = raw.find(b"\r\n")
                    if eol < 0:
                        break
                    size = int(raw[:eol].split(b";")[0], 16)
                    if len(raw) < eol + 2 + size + 2:
                        break
                    payload += raw[eol + 2:eol + 2 + size]
                    raw = raw[eol + 2 + size + 2:]
            else:
                payload += data
            frames = payload.split(b"\n\n")
            payload = frames.pop()
            for frame in frames:
                m = re.search(rb"(?m)^id: (\d+)$", frame)
                if m:
                    ids.append(int(m.group(1)))

    start = time.perf_counter()
    receiver = asyncio.ensure_future(receive())
    await asyncio.gather(*(trigger(c) for c in conns))
    await receiver
    elapsed = time.perf_counter() - start
    writer.close()
    for c in conns:
        c.close()
    return triggered, failed, ids, elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20000, help="requests per figure at most (default 20000)")
    p.add_argument("--seconds", type=float, default=20.0, help="time limit per figure (default 20)")
    p.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    args = p.parse_args(argv)
    token = secrets.token_hex(20)
    auth = b"Basic " + __import__("base64").b64encode(b"wr:" + token.encode())
    proc, port, state = startDaemon(token)
    try:
        sent, failed, elapsed = asyncio.run(fireEvents(port, auth, args.count, args.seconds, args.connections))
        triggered, tfailed, ids, welapsed = asyncio.run(
            workerEvents(port, auth, args.count, args.seconds, args.connections))
    finally:
        stopDaemon(proc, state)
    print("fire-event: requests=%d failed=%d elapsed=%.2fs requests/s=%.0f" % (sent, failed, elapsed, sent / elapsed))
    inOrder = ids == sorted(ids) and len(set(ids)) == len(ids)
    print("sse-worker: triggered=%d failed=%d received=%d unique_in_order=%s elapsed=%.2fs events/s=%.0f"
          % (triggered, tfailed, len(ids), inOrder, welapsed, len(ids) / welapsed))
    ok = not failed and not tfailed and inOrder and len(ids) == triggered
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
