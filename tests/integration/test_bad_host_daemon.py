"""
Host headers that are no host, sent raw over loopback sockets to the real
daemon (C{twistd -n rocketd}): every route family on both listeners
answers without a 5xx and without HTML, URIs carry the listening address,
and a WebSocket upgrade still succeeds.
"""

from __future__ import annotations

import base64
import os
import socket
import time

import pytest

from .daemon import HOST, startVhostDaemon

MOON = "37383acee7109d3136e87fe4af9cf3deb2dc8fef"
DEADLINE = 10.0
BAD_HOSTS = (b"a..b", b"a" * 64, b"x" * 64 + b".example:80", b"\xc3\xa9..", b"[zz]", b"a:99999")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    rocketd = startVhostDaemon(tmp_path_factory.mktemp("rocketd-badhost"), MOON)
    yield rocketd
    rocketd.close()


def exchange(port: int, head: bytes) -> tuple:
    """
    Send one raw request (C{Connection: close}) and read the whole answer,
    with a deadline.

    @return: C{(status, lower-case header dict, body)}.
    """
    deadline = time.monotonic() + DEADLINE
    with socket.create_connection((HOST, port), timeout=DEADLINE) as sock:
        sock.sendall(head)
        data = b""
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if head.startswith(b"GET /moon HTTP") and b"\r\n\r\n" in data:
                break  # a WebSocket stays open
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 "), data[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(b" ")[1]), headers, body


def request(port, method, path, host, extra=b""):
    return exchange(
        port, b"%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n" % (method, path, host, extra)
    )


def test_badHostEveryRoute(daemon):
    wr = b"Authorization: Basic " + base64.b64encode(b"wr:" + MOON.encode()) + b"\r\n"
    with open(os.path.join(daemon.stateDir, "admin.cookie"), "rb") as f:
        cookie = b"X-Rocketd-Cookie: " + f.read().strip() + b"\r\n"
    listening = b"http://%s:%d/restms/" % (HOST.encode(), daemon.port)
    routes = (
        (daemon.port, b"GET", b"/restms/", b"", 404),
        (daemon.port, b"GET", b"/restms/domain/", b"", 200),
        (daemon.port, b"GET", b"/restms/domain/moon", wr, 200),
        (daemon.port, b"GET", b"/restms/some/thing", b"", 404),
        (daemon.port, b"GET", b"/restms/feed/default", b"", 200),
        (daemon.port, b"GET", b"/restms/resource/x", b"", 404),
        (daemon.port, b"GET", b"/moon/channels", wr, 200),
        (daemon.port, b"GET", b"/nothing", b"", 404),
        (daemon.adminPort, b"GET", b"/vhosts", cookie, 200),
        (daemon.adminPort, b"GET", b"/vhosts/moon", cookie, 200),
    )
    for bad in BAD_HOSTS:
        for port, method, path, extra, expected in routes:
            status, headers, body = request(port, method, path, bad, extra)
            assert status == expected, (bad, path, status, body[:200], daemon.logTail())
            assert b"html" not in headers.get(b"content-type", b""), (bad, path)
            assert bad not in body, (bad, path)
            if path.startswith(b"/restms/domain/"):
                assert listening in body, (bad, path, body[:300])
    assert "Traceback" not in daemon.logTail(400)


def test_badHostWebSocket(daemon):
    """The Host a browser sent never stops the WebSocket handshake."""
    for bad in BAD_HOSTS:
        head = (
            b"GET /moon HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (bad, base64.b64encode(os.urandom(16)))
        )
        status, headers, _ = exchange(daemon.port, head)
        assert status == 101, (bad, headers)
