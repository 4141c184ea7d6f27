"""
Slow and numerous clients against the real daemon, over loopback sockets:
clients that trickle their request heads are answered 408 and closed when
the head deadline passes while others are served, and the connection
beyond the cap is closed at once, without the daemon running out of file
descriptors.

The daemon runs with a short head deadline and under a small limit on
open files (as C{ulimit -n} sets) with the default C{max_connections},
which it must fit to that limit.
"""

from __future__ import annotations

import select
import socket
import time

import pytest

from rocketd.app import ADMIN_MAX_CONNECTIONS
from rocketd.http.connections import FD_RESERVE

from .daemon import HOST, Daemon

HEAD_TIMEOUT = 1.5
#: The daemon's limit on open files, and the cap it must fit to it.
FILE_LIMIT = 256
CAP = FILE_LIMIT - FD_RESERVE - ADMIN_MAX_CONNECTIONS
SLOW_CLIENTS = 10


@pytest.fixture(scope="module", params=["off", "on"], ids=["twisted.web", "front door"])
def daemon(tmp_path_factory, request):
    state = tmp_path_factory.mktemp("rocketd")
    config = state / "rocketd.conf"
    config.write_text(f"[rocketd]\nhead_timeout = {HEAD_TIMEOUT}\nfront_door = {request.param}\n")
    rocketd = Daemon(fileLimit=FILE_LIMIT)
    rocketd.start(["--config", str(config)], stateDir=str(state))
    yield rocketd
    rocketd.close()


def connect(daemon, timeout=5.0) -> socket.socket:
    return socket.create_connection((HOST, daemon.port), timeout=timeout)


def readUntilClosed(sock, deadline) -> tuple:
    """
    @return: C{(data, closed)}: what the server sent until it closed the
        connection (or reset it), or until C{deadline}.
    """
    data = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def keepAliveGet(daemon, timeout=5.0):
    """
    @return: a connection that has had one GET answered and is kept open,
        or None if the daemon closed it without an answer.
    """
    sock = connect(daemon, timeout)
    try:
        sock.sendall(f"GET /restms/domain/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        data = b""
        while b"</restms>" not in data and b"}" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        data = b""
    if not data.startswith(b"HTTP/1.1 200"):
        sock.close()
        return None
    return sock


def test_slowHeadsTimedOutOthersServed(daemon):
    """
    Clients that send a header byte every 0.3 s (each within the idle
    timeout) are answered 408 and closed about C{HEAD_TIMEOUT} after they
    connected, while a normal client is served all along.
    """
    slow = []
    for i in range(SLOW_CLIENTS):
        sock = connect(daemon)
        sock.sendall(b"GET /restms/domain/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append([sock, time.monotonic(), b"", None])
    served = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(s[3] is None for s in slow):
        for entry in slow:
            sock, opened, data, closedAt = entry
            if closedAt is not None:
                continue
            try:
                sock.send(b"a")
            except OSError:
                pass
            more, closed = readUntilClosed(sock, time.monotonic() + 0.01)
            entry[2] += more
            if closed:
                entry[3] = time.monotonic() - opened
        start = time.monotonic()
        response = daemon.request("GET", "/restms/domain/", timeout=5)
        served.append((response.status, time.monotonic() - start))
        time.sleep(0.3)
    try:
        assert [s[3] is not None for s in slow] == [True] * SLOW_CLIENTS, daemon.logTail()
        for sock, opened, data, closedAfter in slow:
            assert data.startswith(b"HTTP/1.1 408 "), data
            assert b"Connection: close" in data
            assert HEAD_TIMEOUT - 0.2 < closedAfter < HEAD_TIMEOUT + 3, closedAfter
        assert len(served) >= 3
        assert all(status == 200 for status, _ in served), served
        assert max(took for _, took in served) < 2 * HEAD_TIMEOUT, served
    finally:
        for entry in slow:
            entry[0].close()


def test_capClosesTheNextConnectionWithoutEMFILE(daemon):
    """
    Under a limit of C{FILE_LIMIT} open files, the default
    C{max_connections} is lowered to fit: the connection beyond the cap is
    closed at once without an answer and counted, the daemon never runs
    out of descriptors, and it serves again as soon as a connection closes.
    """
    held = []
    try:
        for i in range(CAP + 20):
            sock = keepAliveGet(daemon)
            if sock is None:
                break
            held.append(sock)
        assert len(held) == CAP, daemon.logTail()
        # The next ones are closed at once, without an answer.
        for i in range(50):
            sock = connect(daemon)
            try:
                sock.sendall(b"GET /restms/domain/ HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
            start = time.monotonic()
            data, closed = readUntilClosed(sock, start + 5)
            sock.close()
            assert (data, closed) == (b"", True)
            assert time.monotonic() - start < HEAD_TIMEOUT, "closed by the head deadline, not at once"
        # One goes: a new client is served.
        held.pop().close()
        deadline = time.monotonic() + 10
        sock = None
        while sock is None and time.monotonic() < deadline:
            sock = keepAliveGet(daemon)
            if sock is None:
                time.sleep(0.05)
        assert sock is not None, daemon.logTail()
        held.append(sock)
    finally:
        for sock in held:
            sock.close()
    # Every connection is closed: the daemon serves as before.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if daemon.request("GET", "/restms/domain/", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.05)
    else:
        raise AssertionError(daemon.logTail())
    with open(daemon.logPath, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert "EMFILE" not in log and "Too many open files" not in log, daemon.logTail()
    assert "does not fit the file descriptor limit" in log
    assert "The main listener refused" in log
