"""
The front door (C{[rocketd] front_door = on}) against the real daemon, over
loopback sockets: the same requests answered the same way as through
twisted.web (the differential test), and HTTP/1.1 done right: keep-alive,
pipelining in every order (a waiting asynclet included), HTTP/1.0 and
C{Connection: close}, chunked bodies, C{Expect: 100-continue}, 413, 431,
400, and the head deadline.
"""

from __future__ import annotations

import base64
import re
import socket
import time

import pytest

from .daemon import HOST, Daemon

TOKEN = "0123456789abcdef0123456789abcdef01234567"
MAX_BODY = 4096
HEAD_TIMEOUT = 2.0
CONFIG = f"""[rocketd]
head_timeout = {HEAD_TIMEOUT}
front_door = {{}}

[restms]
max_body = {MAX_BODY}
long_poll = 5

[vhost /moon]
token = {TOKEN}
"""
AUTH = b"Authorization: Basic " + base64.b64encode(b"wr:" + TOKEN.encode()) + b"\r\n"
XML = b"application/restms+xml"


def _start(tmp_path_factory, frontDoor: str) -> Daemon:
    state = tmp_path_factory.mktemp("rocketd")
    config = state / "rocketd.conf"
    config.write_text(CONFIG.format(frontDoor))
    daemon = Daemon()
    daemon.start(["--config", str(config)], stateDir=str(state))
    return daemon


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    daemon = _start(tmp_path_factory, "on")
    yield daemon
    daemon.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    daemon = _start(tmp_path_factory, "off")
    yield daemon
    daemon.close()


# -- a raw HTTP/1.1 client -------------------------------------------------------


class Conn:
    """One connection, reading answers one at a time."""

    def __init__(self, daemon, timeout=10.0):
        self.sock = socket.create_connection((HOST, daemon.port), timeout=timeout)
        self.buffer = b""
        self.deadline = time.monotonic() + timeout

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _more(self) -> bool:
        self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def closed(self) -> bool:
        """Whether the server closes the connection (before the deadline)."""
        try:
            while self._more():
                pass
        except (socket.timeout, ConnectionResetError):
            return isinstance(ConnectionResetError, type) and False
        return True

    def answer(self, head=False):
        """@return: (status, [(name, value)], body) of the next answer."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise AssertionError(f"closed before an answer: {self.buffer!r}")
        headText, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = headText.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = [tuple(line.split(b": ", 1)) for line in lines[1:]]
        names = {n.lower(): v for n, v in headers}
        if head or status in (100, 204, 304):
            return status, headers, b""
        if b"content-length" in names:
            length = int(names[b"content-length"])
            while len(self.buffer) < length:
                if not self._more():
                    raise AssertionError("closed in a body")
            body, self.buffer = self.buffer[:length], self.buffer[length:]
            return status, headers, body
        if names.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    self._more()
                size, self.buffer = self.buffer.split(b"\r\n", 1)
                size = int(size, 16)
                while len(self.buffer) < size + 2:
                    self._more()
                body, self.buffer = body + self.buffer[:size], self.buffer[size + 2 :]
                if size == 0:
                    return status, headers, body
        while self._more():
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body

    def close(self):
        self.sock.close()


def request(method, path, body=b"", headers=b"", version=b"HTTP/1.1"):
    length = b"Content-Length: %d\r\n" % len(body) if body or method in (b"POST", b"PUT") else b""
    return b"%s %s %s\r\nHost: localhost\r\n%s%s\r\n%s" % (method, path, version, length, headers, body)


def message(address=b"x", body=b"hello"):
    return (
        b'<restms xmlns="http://www.restms.org/schema/restms"><message address="%s">'
        b'<content type="text/plain" encoding="base64">%s</content></message></restms>'
        % (address, base64.b64encode(body))
    )


def publish(feed=b"default", doc=None, headers=b""):
    return request(b"POST", b"/restms/feed/" + feed, doc or message(), b"Content-Type: application/restms+xml\r\n" + headers)


def exchange(daemon, data: bytes):
    conn = Conn(daemon)
    try:
        conn.send(data)
        return conn.answer()
    finally:
        conn.close()


def createPipe(daemon) -> bytes:
    """A fifo pipe (joined to the default feed by its hash, its default join); its hash."""
    status, headers, body = exchange(
        daemon, request(b"POST", b"/restms/domain/default", b"", b"Content-Type: application/restms+xml\r\n")
    )
    assert status == 201, body
    location = dict((n.lower(), v) for n, v in headers)[b"location"]
    pipe = location.rsplit(b"/", 1)[1]
    return pipe


# -- the differential test --------------------------------------------------------

#: Requests (templates: {pipe}, {asynclet} are the daemon's) and the statuses they give.
DIFFERENTIAL = [
    (publish(), 200),
    (publish(headers=b"Connection: close\r\n"), 200),
    (publish(b"nosuchfeed"), 404),
    (publish(doc=b"<restms><broken"), 400),
    (request(b"POST", b"/restms/feed/default", b"raw bytes", b"Content-Type: text/plain\r\nAccept: text/html\r\n"), 406),
    (publish().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 200),
    (request(b"GET", b"/restms/resource/{asynclet}?timeout=0", headers=b"Accept: application/restms+xml\r\n"), 204),
    (request(b"GET", b"/restms/resource/{asynclet}?timeout=x"), 400),
    (request(b"DELETE", b"/restms/resource/{asynclet}"), 403),
    (request(b"GET", b"/restms/resource/nosuchhash"), 404),
    (request(b"DELETE", b"/restms/resource/nosuchhash"), 200),
    (request(b"DELETE", b"/restms/resource/nosuchhash", headers=b'If-Match: "x"\r\n'), 412),
    (request(b"POST", b"/moon/channels/nochannel/events", b'{"trigger": {"event": "e"}}', AUTH), 404),
    (request(b"POST", b"/moon/channels/chat", b"", AUTH), 202),
    (request(b"POST", b"/moon/channels/chat/events", b'{"trigger": {"event": "e", "data": {}}}', AUTH), 202),
    (request(b"POST", b"/moon/channels/chat/events/", b'{"trigger": {"event": "e"}}', AUTH), 202),
    (request(b"POST", b"/restms/domain/default", b"", b"Slug: news\r\nAccept: application/restms+json\r\n"), 201),
    (request(b"POST", b"/restms/domain/", b"", b"Slug: news\r\nAccept: application/restms+json\r\n"), 200),
    (request(b"GET", b"/restms/domain", headers=b"Accept: application/restms+xml\r\n"), 200),
    (request(b"GET", b"/restms/domain/moon/", headers=AUTH + b"Accept: application/restms+json\r\n"), 200),
    (request(b"GET", b"/restms/domain/moon"), 404),
    (request(b"GET", b"/restms/domain/no/such"), 404),
    (request(b"GET", b"/restms/domain/default", headers=b"Accept: text/html\r\n"), 406),
    (request(b"DELETE", b"/restms/domain/default"), 403),
    (request(b"PUT", b"/restms/domain/default", b"x"), 403),
    (request(b"POST", b"/moon/channels/chat/events", b"not json", AUTH), 400),
    (request(b"POST", b"/moon/channels/bad name!/events", b'{"trigger": {"event": "e"}}', AUTH), 400),
    (request(b"POST", b"/moon/channels/chat/events", b'{"trigger": {"event": "e"}}'), 401),
    (request(b"POST", b"/nosuchvhost/channels/chat/events", b"{}", AUTH), 404),
    (request(b"GET", b"/moon/channels/chat/events", b"", AUTH), 405),
    (request(b"POST", b"/restms/feed/default", b"x" * (MAX_BODY + 1), b"Content-Type: application/restms+xml\r\n"), 413),
    (request(b"POST", b"/moon/channels/chat/events", b"x" * (MAX_BODY + 1), AUTH), 413),
]


#: A hash the engine draws (24 base64url characters).
_HASH = re.compile(rb"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{24}(?![A-Za-z0-9_-])")


def _normalise(daemon, answer, names):
    """The answer with the daemon's hashes named by first appearance, and without Date and Last-Modified."""
    status, headers, body = answer

    def name(match):
        return names.setdefault(match.group(0), b"H%d" % len(names))

    headers = [(n, _HASH.sub(name, v)) for n, v in headers if n.lower() not in (b"date", b"last-modified")]
    # A private resource's entity tag starts with its hash, then "-".
    headers = [(n, re.sub(rb'^"[A-Za-z0-9_-]{24}-', b'"HASH-', v) if n.lower() == b"etag" else v) for n, v in headers]
    return status, headers, _HASH.sub(name, body)


def test_differential(front, web):
    """
    The same requests, valid and invalid, give the same status, headers
    (less Date and Last-Modified) and body through the front door as
    through twisted.web.
    """
    hashes = {}
    for daemon in (front, web):
        pipe = createPipe(daemon)
        # A message held in the pipe, and its asynclet after it.
        exchange(daemon, publish(doc=message(address=pipe)))
        hashes[daemon] = pipe
    for template, expected in DIFFERENTIAL:
        answers = []
        for daemon in (front, web):
            names = {}
            asynclet = _asynclet(daemon, hashes[daemon])
            data = template.replace(b"{asynclet}", asynclet)
            answers.append(_normalise(daemon, exchange(daemon, data), names))
        assert answers[0][0] == expected, (template, answers[0])
        assert answers[0] == answers[1], template


def _asynclet(daemon, pipe) -> bytes:
    """The pipe's asynclet (the hash its document names last)."""
    status, _, body = exchange(daemon, request(b"GET", b"/restms/resource/" + pipe, headers=b"Accept: application/restms+xml\r\n"))
    assert status == 200
    return re.findall(rb'<message[^>]*href="[^"]*/resource/([A-Za-z0-9_-]+)"[^>]*async="1"', body)[-1]


# -- HTTP/1.1 ----------------------------------------------------------------------

HOT = publish()
COLD = request(b"GET", b"/restms/domain/default", headers=b"Accept: application/restms+xml\r\n")


def test_keepAlive(front):
    conn = Conn(front)
    for _ in range(3):
        conn.send(HOT)
        assert conn.answer()[0] == 200
    conn.send(COLD)
    assert conn.answer()[0] == 200
    conn.close()


@pytest.mark.parametrize(
    "order",
    ["hot hot", "hot cold", "cold hot", "cold cold", "hot cold hot", "cold hot cold"],
)
def test_pipelined(front, order):
    """Requests in one write are answered in order, whatever each is."""
    kinds = order.split()
    conn = Conn(front)
    conn.send(b"".join(HOT if kind == "hot" else COLD for kind in kinds))
    for kind in kinds:
        status, headers, body = conn.answer()
        assert status == 200
        if kind == "cold":
            assert b"<domain" in body
        else:
            assert body == b""
    conn.close()


def test_pipelinedWaitingAsyncletThenCold(front):
    """A hot request that waits (an asynclet) answers before the cold one after it."""
    pipe = createPipe(front)
    asynclet = _asynclet(front, pipe)
    # Wait on the asynclet after the held messages: fetch them first.
    conn = Conn(front)
    conn.send(
        request(b"GET", b"/restms/resource/" + asynclet + b"?timeout=1", headers=b"Accept: application/restms+xml\r\n")
        + COLD
    )
    first = conn.answer()
    second = conn.answer()
    assert first[0] in (200, 204)
    assert second[0] == 200 and b"<domain" in second[2]
    conn.close()


def test_http10AndConnectionClose(front):
    for data in (HOT.replace(b"HTTP/1.1", b"HTTP/1.0", 1), publish(headers=b"Connection: close\r\n")):
        conn = Conn(front)
        conn.send(data + HOT)
        assert conn.answer()[0] == 200
        assert conn.closed()
        assert conn.buffer == b""
        conn.close()


def test_chunkedBody(front):
    doc = message()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(doc[i : i + 10]), doc[i : i + 10]) for i in range(0, len(doc), 10))
    conn = Conn(front)
    conn.send(
        b"POST /restms/feed/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/restms+xml\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
    )
    assert conn.answer()[0] == 200
    conn.close()


def test_expectContinue(front):
    doc = message()
    conn = Conn(front)
    conn.send(
        b"POST /restms/feed/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/restms+xml\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(doc)
    )
    assert conn.answer()[0] == 100
    conn.send(doc)
    assert conn.answer()[0] == 200
    conn.close()


def test_tooLargeBeforeTheBody(front):
    """413 with the RestMS sentence before the body is sent, then close."""
    conn = Conn(front)
    conn.send(
        b"POST /restms/feed/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/restms+xml\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    )
    status, headers, body = conn.answer()
    assert status == 413
    assert body == b"The request body is larger than the server accepts.\n"
    assert conn.closed()
    conn.close()


def test_headTooLarge(front):
    conn = Conn(front)
    conn.send(b"POST /restms/feed/default HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(600)) + b"\r\n")
    assert conn.answer()[0] == 431
    assert conn.closed()
    conn.close()


def test_malformed(front):
    for data in (b"NOT HTTP AT ALL\r\n\r\n", b"POST /restms/feed/default HTTP/1.1\r\nBad Header\r\n\r\n"):
        conn = Conn(front)
        conn.send(data)
        assert conn.answer()[0] == 400
        assert conn.closed()
        conn.close()


def test_headDeadline(front):
    """A half-sent head is answered 408 and closed after the head deadline."""
    conn = Conn(front, timeout=HEAD_TIMEOUT + 10)
    started = time.monotonic()
    conn.send(b"POST /restms/feed/default HTTP/1.1\r\nHost: loc")
    assert conn.answer()[0] == 408
    assert HEAD_TIMEOUT - 0.5 <= time.monotonic() - started < HEAD_TIMEOUT + 5
    conn.close()


def _rss(pid) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _cpu(pid) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _waitIdle(pid, timeout=60.0) -> None:
    """Until the process has used no CPU for half a second (or the timeout)."""
    deadline = time.monotonic() + timeout
    last = _cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _cpu(pid)
        if now == last:
            return
        last = now


def test_writeBackpressure(front):
    """
    A client that sends requests and never reads their answers is paused:
    once its answers fill the socket buffers, the server stops reading
    from it rather than answering everything into memory; other clients
    are served meanwhile.
    """
    pipe = createPipe(front)
    exchange(front, publish(doc=message(address=pipe, body=b"m" * 2500)))
    status, _, body = exchange(front, request(b"GET", b"/restms/resource/" + pipe, headers=b"Accept: application/restms+xml\r\n"))
    held = re.findall(rb'<message[^>]*href="[^"]*/resource/([A-Za-z0-9_-]+)"', body)[0]
    get = request(b"GET", b"/restms/resource/" + held, headers=b"Accept: application/restms+xml\r\n")
    answer = len(exchange(front, get)[2])
    chunk = get * (1048576 // len(get))
    pid = front.process.pid
    before = _rss(pid)
    sock = socket.create_connection((HOST, front.port))
    sock.setblocking(False)
    sent, stalled = 0, None
    deadline = time.monotonic() + 30
    try:
        # Send until the server has not taken a byte for 2 seconds (bounded).
        while sent < 64 * 1048576 and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
                stalled = None
            except BlockingIOError:
                if stalled is None:
                    stalled = time.monotonic()
                elif time.monotonic() - stalled > 2.0:
                    break
                time.sleep(0.01)
        assert exchange(front, COLD)[0] == 200
        _waitIdle(pid)
        grown = _rss(pid) - before
        # Unpaused, the server would hold the answers to every request it
        # has read: with several MB of requests in the socket buffers, far
        # more than this.
        assert sent // len(get) * answer > 100 * 1048576, "too few requests sent to tell"
        assert grown < 48 * 1048576, f"the server grew by {grown} bytes"
    finally:
        sock.close()
