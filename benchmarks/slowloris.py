"""
Slowloris against rocketd: many clients that trickle their request heads
(a header byte every 1 to 2 s, each byte within the idle timeout) while a
normal client makes requests, against a daemon run under a small limit on
open files with the default settings (a loopback listener on a free port,
a temporary state directory, nothing else).

    python benchmarks/slowloris.py                       # 1,100 slow clients, ulimit -n 1024, 30 s
    python benchmarks/slowloris.py --file-limit 8192     # the limit etc/rocketd.service sets
    python benchmarks/slowloris.py --root /tmp/old       # another checkout's daemon

It prints what happened to the slow clients (answered 408, closed at once
by the connection cap, closed otherwise, still open at the end), the
normal client's requests (served, failed, latency) and what the daemon
logged (EMFILE, refused-connection warnings). Everything is on 127.0.0.1,
bounded in count (C{--slow}) and time (C{--duration}).
"""

from __future__ import annotations

import argparse
import errno
import http.client
import os
import random
import re
import resource
import selectors
import socket
import sys
import tempfile
import threading
import time
from typing import List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import servers  # noqa: E402
from benchmarks.servers import HOST, RocketdServer  # noqa: E402

#: A slow client closed within this long of its connect, without an
#: answer, was refused by the cap.
AT_ONCE = 1.0


class Target(RocketdServer):
    """
    The daemon with the default settings, under C{ulimit -n FILE_LIMIT}
    (soft and hard), from the checkout C{root}.
    """

    def __init__(self, workdir: str, fileLimit: int, root: str):
        RocketdServer.__init__(self, workdir)
        self.fileLimit = fileLimit
        self.root = root

    def config(self) -> str:
        return "# The defaults.\n"

    def _pin(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fileLimit, self.fileLimit))

    def start(self) -> None:
        before = servers.ROOT
        servers.ROOT = self.root
        try:
            RocketdServer.start(self)
        finally:
            servers.ROOT = before


class Slow:
    """One slow client: its socket, and what became of it."""

    def __init__(self, sock: socket.socket, interval: float):
        self.sock = sock
        self.interval = interval
        self.connected: Optional[float] = None
        self.nextByte = 0.0
        self.data = b""
        self.closed: Optional[float] = None
        self.reset = False
        self.failed: Optional[str] = None


#: With --reconnect, how many connections each slow client may open in all.
RECONNECTS = 20


def slowClients(count: int, port: int, duration: float, rng: random.Random, reconnect: bool = False) -> List[Slow]:
    """
    Open C{count} connections at once and trickle a head on each until
    the daemon closes it or C{duration} seconds have passed; with
    C{reconnect}, each one the daemon closes is replaced by a new one (at
    most C{RECONNECTS} times C{count} in all), as an attacker would.
    """
    selector = selectors.DefaultSelector()
    clients = []

    def connect() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        client = Slow(sock, rng.uniform(1.0, 2.0))
        code = sock.connect_ex((HOST, port))
        if code not in (0, errno.EINPROGRESS):
            client.failed = errno.errorcode.get(code, str(code))
            sock.close()
        else:
            selector.register(sock, selectors.EVENT_WRITE, client)
        clients.append(client)

    for i in range(count):
        connect()
    end = time.monotonic() + duration
    while time.monotonic() < end:
        now = time.monotonic()
        for key, events in selector.select(timeout=0.05):
            client = key.data
            if client.connected is None:
                code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    client.failed = errno.errorcode.get(code, str(code))
                    selector.unregister(client.sock)
                    client.sock.close()
                    continue
                client.connected = now
                try:
                    client.sock.send(b"GET /restms/domain/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                except OSError:
                    pass
                client.nextByte = now + client.interval
                selector.modify(client.sock, selectors.EVENT_READ, client)
                continue
            try:
                chunk = client.sock.recv(65536)
            except ConnectionResetError:
                chunk, client.reset = b"", True
            except BlockingIOError:
                continue
            client.data += chunk
            if not chunk:
                client.closed = now
                selector.unregister(client.sock)
                client.sock.close()
                if reconnect and len(clients) < RECONNECTS * count:
                    connect()
        for key in list(selector.get_map().values()):
            client = key.data
            if client.connected is not None and now >= client.nextByte:
                try:
                    client.sock.send(b"a")
                except OSError:
                    pass
                client.nextByte = now + client.interval
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    selector.close()
    return clients


def normalClient(port: int, duration: float, pause: float, results: list) -> None:
    """A new connection and one GET every C{pause} seconds; records (status or error, seconds)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        start = time.monotonic()
        connection = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            connection.request("GET", "/restms/domain/")
            response = connection.getresponse()
            response.read()
            outcome = response.status
        except (OSError, http.client.HTTPException) as e:
            outcome = type(e).__name__
        finally:
            connection.close()
        results.append((start, outcome, time.monotonic() - start))
        time.sleep(pause)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=1100, help="slow clients (default: 1100)")
    parser.add_argument("--file-limit", type=int, default=1024, help="the daemon's ulimit -n (default: 1024)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds the slow clients run (default: 30)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between normal requests (default: 0.2)")
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="a slow client the daemon closes opens a new connection at once, as an attacker would",
    )
    parser.add_argument("--root", default=servers.ROOT, help="the checkout whose daemon runs (default: this one)")
    args = parser.parse_args(argv)
    if not 0 < args.slow <= 5000 or not 0 < args.duration <= 300:
        parser.error("--slow is at most 5000 and --duration at most 300 s")
    servers.fileLimit()  # this process holds every slow client's socket
    rng = random.Random(10)
    workdir = tempfile.mkdtemp(prefix="rocketd-slowloris-")
    target = Target(workdir, args.file_limit, os.path.abspath(args.root))
    target.start()
    try:
        normal: list = []
        thread = threading.Thread(target=normalClient, args=(target.port, args.duration, args.pause, normal))
        began = time.monotonic()
        thread.start()
        clients = slowClients(args.slow, target.port, args.duration, rng, reconnect=args.reconnect)
        thread.join()
        # Afterwards: does it serve?
        after = []
        normalClient(target.port, 1.0, 0.2, after)
        alive = target.process.poll() is None
    finally:
        target.stop()
    with open(target.logPath, encoding="utf-8", errors="replace") as f:
        log = f.read()
    target.cleanup()

    failed = [c for c in clients if c.failed]
    got408 = [c for c in clients if c.data.startswith(b"HTTP/1.1 408")]
    refused = [c for c in clients if c.closed is not None and not c.data and c.closed - c.connected < AT_ONCE]
    otherClosed = [c for c in clients if c.closed is not None and c not in got408 and c not in refused]
    stillOpen = [c for c in clients if c.connected is not None and c.closed is None]
    held = [c.closed - c.connected for c in got408]
    served = [r for r in normal if r[1] == 200]
    notServed = [r for r in normal if r[1] != 200]
    firstServed = min((r[0] - began for r in served), default=float("nan"))
    errors = {}
    for _, outcome, _ in notServed:
        errors[outcome] = errors.get(outcome, 0) + 1
    emfile = len(re.findall(r"EMFILE|Too many open files", log))
    warnings = re.findall(r"refused (\d+) connection", log)
    evicted = re.findall(r"and closed (\d+) waiting", log)

    print(
        f"daemon: {args.root}, ulimit -n {args.file_limit}, defaults; {args.slow} slow clients for {args.duration:g} s"
        + (", reconnecting when closed" if args.reconnect else "")
    )
    print(f"slow clients: {len(clients)} opened, {len(failed)} failed to connect"
          + (f" ({sorted(set(c.failed for c in failed))})" if failed else ""))
    print(f"  answered 408 and closed: {len(got408)} (after {percentile(held, 0.5):.1f} s median, "
          f"{max(held, default=float('nan')):.1f} s max)")
    print(f"  closed at once without an answer: {len(refused)}")
    print(f"  closed otherwise: {len(otherClosed)} ({sum(c.reset for c in otherClosed)} reset)")
    print(f"  still open at the end: {len(stillOpen)}")
    print(f"normal client: {len(normal)} requests, {len(served)} served (200), {len(notServed)} not {errors or ''}")
    if notServed:
        print(f"  not served from {notServed[0][0] - began:.1f} s to {notServed[-1][0] - began:.1f} s into the run")
    print(f"  first served {firstServed:.1f} s into the run; latency p50 "
          f"{percentile([r[2] for r in served], 0.5) * 1000:.0f} ms, max {max((r[2] for r in served), default=0) * 1000:.0f} ms")
    print(f"  after the run: {sum(r[1] == 200 for r in after)}/{len(after)} served; daemon alive: {alive}")
    print(f"daemon log: {emfile} EMFILE lines; {len(warnings)} refused-connection warnings "
          f"(counts {', '.join(warnings) or '-'})")
    if evicted:
        print(f"  closed to make room for new connections (in those warnings): {sum(map(int, evicted))}")
    fitted = re.search(r"keeps at most (\d+) connections", log)
    if fitted:
        print(f"  main listener cap fitted to the file limit: {fitted.group(1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
