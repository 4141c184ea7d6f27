"""
The WebRocket frontend of a real daemon (C{twistd -n rocketd} on a free
loopback port) over real WebSockets: every client event, every C{:error}
code, presence with five clients, channels closed by the backend, origins,
and the slow-subscriber policy.

The client is L{WebSocket}, a small blocking RFC 6455 client on a plain
socket: the tests need to control the socket itself (a small receive
buffer, a client that stops reading), and every read has a deadline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
import urllib.parse

import pytest

from .daemon import HOST, Daemon, startVhostDaemon

MOON = "37383acee7109d3136e87fe4af9cf3deb2dc8fef"
DEADLINE = 10.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeRefused(Exception):
    """The server answered the opening handshake with something else than 101."""

    def __init__(self, status: int, head: bytes):
        Exception.__init__(self, status, head)
        self.status = status
        self.head = head


class Closed(Exception):
    """The server closed the WebSocket (C{code} None: the TCP connection ended without a close frame)."""

    def __init__(self, code, reason=""):
        Exception.__init__(self, code, reason)
        self.code = code
        self.reason = reason


class WebSocket:
    """
    A blocking WebSocket client.

    @param port: the server's port on L{HOST}.
    @param path: the request path (a vhost path for rocketd).
    @param origin: the C{Origin} header to send, if any.
    @param rcvbuf: a receive buffer size to set before connecting.
    """

    def __init__(self, port, path, origin=None, rcvbuf=None, timeout=DEADLINE, host=HOST):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16))
        lines = [
            b"GET " + path.encode() + b" HTTP/1.1",
            b"Host: " + f"{host}:{port}".encode(),
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + key,
            b"Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            lines.append(b"Origin: " + origin.encode())
        self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HandshakeRefused(0, self.buffer)
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            self.sock.close()
            raise HandshakeRefused(status, head)
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        assert b"sec-websocket-accept: " + accept.lower() in head.lower(), head
        self.closed = None

    # -- frames ---------------------------------------------------------------

    def sendFrame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, document) -> None:
        """Send a JSON document (or text as it is) in a text frame."""
        text = document if isinstance(document, str) else json.dumps(document)
        self.sendFrame(0x1, text.encode("utf-8"))

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete frame within the deadline ({len(self.buffer)} bytes buffered)")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(None, "the connection ended")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recvFrame(self, timeout: float = DEADLINE):
        """
        @return: C{(opcode, payload)} of the next data message (pings are
            answered, fragments joined).
        @raise Closed: on a close frame (answered) or the end of the connection.
        @raise TimeoutError: nothing complete within C{timeout}.
        """
        deadline = time.monotonic() + timeout
        message, messageOpcode = b"", None
        while True:
            b0, b1 = self._read(2, deadline)
            opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2, deadline))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8, deadline))
            if b1 & 0x80:
                mask = self._read(4, deadline)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n, deadline)))
            else:
                payload = self._read(n, deadline)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.closed = code
                try:
                    self.sendFrame(0x8, payload[:2])
                except OSError:
                    pass
                raise Closed(code, payload[2:].decode("utf-8", "replace"))
            if opcode == 0x9:
                self.sendFrame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode != 0x0:
                messageOpcode = opcode
            message += payload
            if fin:
                return messageOpcode, message

    def recv(self, timeout: float = DEADLINE) -> dict:
        """@return: the next message, a JSON document."""
        opcode, payload = self.recvFrame(timeout)
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    def recvEvent(self, name: str, timeout: float = DEADLINE) -> dict:
        """@return: the body of the next message, which must be the event C{name}."""
        message = self.recv(timeout)
        assert list(message) == [name], message
        return message[name]

    def expectNothing(self, wait: float = 0.3) -> None:
        """Assert that no message arrives within C{wait} seconds."""
        try:
            message = self.recv(wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {message!r}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- the daemon and its backend ------------------------------------------------


class Backend:
    """The backend API of C{/moon} on a daemon, over HTTP."""

    def __init__(self, daemon: Daemon, vhost="/moon", token=MOON):
        self.daemon = daemon
        self.vhost = vhost
        self.auth = "Basic " + base64.b64encode(f"wr:{token}".encode()).decode()

    def request(self, method, path, body=None):
        headers = {"Authorization": self.auth}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = self.daemon.request(method, self.vhost + path, body=body, headers=headers)
        return response.status, (json.loads(response.body) if response.body else None)

    def openChannel(self, name):
        status, _ = self.request("POST", "/channels/" + name)
        assert status == 202

    def closeChannel(self, name):
        status, _ = self.request("DELETE", "/channels/" + name)
        assert status == 202

    def subscribers(self, name):
        status, body = self.request("GET", "/channels/" + name)
        assert status == 200, body
        return body["subscribers"]

    def fire(self, channel, event, data=None):
        trigger = {"event": event}
        if data is not None:
            trigger["data"] = data
        status, body = self.request("POST", f"/channels/{channel}/events", {"trigger": trigger})
        assert status == 202, body

    def token(self, uid, channels=".*"):
        query = urllib.parse.urlencode({"uid": uid, "channels": channels})
        status, body = self.request("GET", "/token?" + query)
        assert status == 200, body
        return body["token"]


class Worker:
    """A backend worker: the SSE stream of C{/moon}'s triggered events."""

    def __init__(self, daemon: Daemon, filter=".*"):
        import http.client

        self.connection = http.client.HTTPConnection(HOST, daemon.port, timeout=DEADLINE)
        query = urllib.parse.urlencode({"filter": filter})
        auth = "Basic " + base64.b64encode(f"wr:{MOON}".encode()).decode()
        self.connection.request("GET", f"/moon/events?{query}", headers={"Authorization": auth})
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.buffer = b""

    def next(self, timeout=DEADLINE):
        """@return: the next event as C{(event, data)}."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n\n" in self.buffer:
                block, self.buffer = self.buffer.split(b"\n\n", 1)
                fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if line and not line.startswith(b":"))
                if b"data" in fields:
                    return fields[b"event"].decode(), json.loads(fields[b"data"])
            if time.monotonic() > deadline:
                raise TimeoutError("no event")
            self.connection.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.response.read1(65536)
            if not chunk:
                raise AssertionError("the event stream ended")
            self.buffer += chunk

    def close(self):
        self.connection.close()


def startDaemon(tmp_path, extra=""):
    return startVhostDaemon(tmp_path, MOON, extra)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the module, with /moon declared."""
    rocketd = startDaemon(
        tmp_path_factory.mktemp("ws"),
        "[webrocket]\nallowed_origins = http://allowed.example https://*.apps.example\n",
    )
    yield rocketd
    rocketd.close()


@pytest.fixture
def backend(daemon):
    return Backend(daemon)


@pytest.fixture
def connect(daemon):
    """Open WebSockets to /moon (greeted: the C{:connected} frame is read); all closed at the end."""
    opened = []

    def connect(path="/moon", **kwargs):
        ws = WebSocket(daemon.port, path, **kwargs)
        opened.append(ws)
        ws.sid = ws.recvEvent(":connected")["sid"]
        return ws

    yield connect
    for ws in opened:
        ws.close()


_names = iter(range(1, 1 << 30))


@pytest.fixture
def channel(backend):
    """A fresh public channel's name."""
    name = f"room{next(_names)}"
    backend.openChannel(name)
    return name


def fresh(prefix):
    return f"{prefix}{next(_names)}"


def authenticated(connect, backend, uid, channels=".*"):
    ws = connect()
    ws.send({"auth": {"token": backend.token(uid, channels)}})
    assert ws.recvEvent(":authenticated") == {}
    return ws


def error(ws):
    return ws.recvEvent(":error")


def waitFor(predicate, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- connecting ----------------------------------------------------------------


def test_connected(daemon):
    """Each connection is greeted with its own UUID4 session id."""
    first, second = WebSocket(daemon.port, "/moon"), WebSocket(daemon.port, "/moon/")
    try:
        a, b = first.recvEvent(":connected")["sid"], second.recvEvent(":connected")["sid"]
        assert len(a) == 36 and a[14] == "4" and a != b
    finally:
        first.close()
        second.close()


def test_unknownVhost(daemon):
    """A WebSocket to a path that is no vhost is refused with 404."""
    with pytest.raises(HandshakeRefused) as refused:
        WebSocket(daemon.port, "/mars")
    assert refused.value.status == 404


def test_bareVhostWithoutUpgrade(daemon):
    """A plain GET of a vhost path is still the backend API's JSON 404."""
    response = daemon.request("GET", "/moon")
    assert response.status == 404
    assert "WebSocket" in json.loads(response.body)["error"]


def test_origins(daemon):
    """Pages of the allowed origins connect; others are refused with 403; non-browsers (no Origin) connect."""
    for origin in ("http://allowed.example", "http://allowed.example:80", "https://chat.apps.example"):
        ws = WebSocket(daemon.port, "/moon", origin=origin)
        assert ":connected" in ws.recv()
        ws.close()
    for origin in ("http://evil.example", "https://allowed.example", "http://allowed.example:8080", "null"):
        with pytest.raises(HandshakeRefused) as refused:
            WebSocket(daemon.port, "/moon", origin=origin)
        assert refused.value.status == 403, origin


# -- malformed frames -------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"subscribe": {"channel": "x"}, "auth": {"token": "t"}}',
        '{"subscribe": "x"}',
        '{"publish": {"channel": "x"}}',
        '{":connected": {}}',
        '{"subscribe": {"channel": NaN}}',
    ],
)
def test_badFrames(connect, frame):
    """Anything but C{{"knownEvent": {object}}} is answered with 400, and the connection stays."""
    ws = connect()
    ws.send(frame)
    assert error(ws) == {"code": 400, "status": "Bad request"}
    ws.send({"close": {}})
    with pytest.raises(Closed):
        ws.recv()


def test_binaryFrame(connect):
    ws = connect()
    ws.sendFrame(0x2, b'{"close": {}}')
    assert error(ws)["code"] == 400


# -- auth -------------------------------------------------------------------------


def test_auth(connect, backend):
    """A token authenticates once; used, unknown or missing tokens are refused."""
    ws = connect()
    token = backend.token("joe")
    ws.send({"auth": {"token": token}})
    assert ws.recvEvent(":authenticated") == {}
    other = connect()
    other.send({"auth": {"token": token}})
    assert error(other) == {"code": 402, "status": "Unauthorized"}
    other.send({"auth": {"token": "0" * 128}})
    assert error(other)["code"] == 402
    for body in ({}, {"token": ""}, {"token": 42}):
        other.send({"auth": body})
        assert error(other)["code"] == 400


def test_reauthDropsSubscriptions(connect, backend):
    """Authenticating again drops the old identity's subscriptions."""
    name = fresh("private-re")
    backend.openChannel(name)
    ws = authenticated(connect, backend, "joe")
    ws.send({"subscribe": {"channel": name}})
    assert ws.recvEvent(":subscribed") == {"channel": name, "uid": "joe"}
    assert backend.subscribers(name) == 1
    ws.send({"auth": {"token": backend.token("ann", "public.*")}})
    assert ws.recvEvent(":authenticated") == {}
    assert backend.subscribers(name) == 0
    ws.send({"subscribe": {"channel": name}})
    assert error(ws)["code"] == 403


# -- subscribe / unsubscribe ------------------------------------------------------


def test_subscribeAndReceive(connect, backend, channel):
    """A subscriber receives the backend's events, with the channel added."""
    ws = connect()
    ws.send({"subscribe": {"channel": channel}})
    assert ws.recvEvent(":subscribed") == {"channel": channel}
    assert backend.subscribers(channel) == 1
    backend.fire(channel, "hello", {"from": "nu7hatch"})
    assert ws.recv() == {"hello": {"from": "nu7hatch", "channel": channel}}
    ws.send({"subscribe": {"channel": channel}})
    assert ws.recvEvent(":subscribed") == {"channel": channel}
    assert backend.subscribers(channel) == 1, "subscribing twice is a no-op"
    ws.send({"unsubscribe": {"channel": channel}})
    assert ws.recvEvent(":unsubscribed") == {"channel": channel}
    assert backend.subscribers(channel) == 0
    backend.fire(channel, "hello", {})
    ws.expectNothing()


def test_subscribeErrors(connect, backend, channel):
    ws = connect()
    for body in ({}, {"channel": ""}, {"channel": 7}, {"channel": channel, "data": []},
                 {"channel": channel, "hidden": "yes"}):
        ws.send({"subscribe": body})
        assert error(ws)["code"] == 400, body
    for name in ("nosuchchannel", "bad name!", "-x", "x" * 129):
        ws.send({"subscribe": {"channel": name}})
        assert error(ws) == {"code": 454, "status": "Channel not found"}, name
    for kind in ("private-", "presence-"):
        name = fresh(kind)
        backend.openChannel(name)
        ws.send({"subscribe": {"channel": name}})
        assert error(ws) == {"code": 403, "status": "Forbidden"}
    assert backend.subscribers(channel) == 0


def test_privateChannelPattern(connect, backend):
    """The token's channel pattern decides which private channels the holder may join."""
    allowed, refused = fresh("private-ok"), fresh("private-no")
    backend.openChannel(allowed)
    backend.openChannel(refused)
    ws = authenticated(connect, backend, "joe", "private-ok.*")
    ws.send({"subscribe": {"channel": refused}})
    assert error(ws)["code"] == 403
    ws.send({"subscribe": {"channel": allowed}})
    assert ws.recvEvent(":subscribed") == {"channel": allowed, "uid": "joe"}


def test_unsubscribeErrors(connect, backend, channel):
    ws = connect()
    ws.send({"unsubscribe": {}})
    assert error(ws)["code"] == 400
    ws.send({"unsubscribe": {"channel": "nosuchchannel"}})
    assert error(ws)["code"] == 454
    ws.send({"unsubscribe": {"channel": channel}})
    assert error(ws) == {"code": 453, "status": "Not subscribed"}


# -- broadcast and trigger ----------------------------------------------------------


def test_broadcast(connect, backend, channel):
    """A broadcast reaches every non-hidden subscriber, the sender included, with sid and channel."""
    sender, other, hidden = connect(), connect(), connect()
    for ws in (sender, other):
        ws.send({"subscribe": {"channel": channel}})
        ws.recvEvent(":subscribed")
    hidden.send({"subscribe": {"channel": channel, "hidden": True}})
    hidden.recvEvent(":subscribed")
    sender.send({"broadcast": {"channel": channel, "event": "say", "data": {"text": "hi", "channel": "forged"}}})
    expected = {"say": {"text": "hi", "sid": sender.sid, "channel": channel}}
    assert sender.recv() == expected
    assert other.recv() == expected
    hidden.expectNothing()
    backend.fire(channel, "news", {"n": 1})
    assert hidden.recv() == {"news": {"n": 1, "channel": channel}}


def test_broadcastErrors(connect, backend, channel):
    ws = connect()
    for body in ({"event": "e"}, {"channel": channel}, {"channel": channel, "event": ""},
                 {"channel": channel, "event": ":memberJoined"}, {"channel": channel, "event": "e", "data": 3},
                 {"channel": channel, "event": "e", "trigger": 5}):
        ws.send({"broadcast": body})
        assert error(ws)["code"] == 400, body
    ws.send({"broadcast": {"channel": "nosuchchannel", "event": "e"}})
    assert error(ws)["code"] == 454
    ws.send({"broadcast": {"channel": channel, "event": "e"}})
    assert error(ws)["code"] == 453
    ws.send({"subscribe": {"channel": channel}})
    ws.recvEvent(":subscribed")
    ws.send({"broadcast": {"channel": channel, "event": "e", "trigger": "t"}})
    assert error(ws)["code"] == 403, "a broadcast with a trigger needs auth"


def test_trigger(daemon, connect, backend, channel):
    """Triggered events reach the workers' stream as channel/event with sid and uid."""
    worker = Worker(daemon)
    try:
        anonymous = connect()
        anonymous.send({"trigger": {"event": "ping"}})
        assert error(anonymous)["code"] == 403
        ws = authenticated(connect, backend, "joe")
        ws.send({"trigger": {"event": "ping", "channel": channel, "data": {"n": 1}}})
        assert worker.next() == (f"{channel}/ping", {"n": 1, "sid": ws.sid, "uid": "joe"})
        ws.send({"trigger": {"event": "bare"}})
        assert worker.next() == ("bare", {"sid": ws.sid, "uid": "joe"})
        ws.send({"subscribe": {"channel": channel}})
        ws.recvEvent(":subscribed")
        ws.send({"broadcast": {"channel": channel, "event": "say", "data": {"t": "x"}, "trigger": "said"}})
        assert ws.recv() == {"say": {"t": "x", "sid": ws.sid, "channel": channel}}
        assert worker.next() == (f"{channel}/said", {"t": "x", "sid": ws.sid, "uid": "joe"})
        for body in ({}, {"event": ""}, {"event": "e", "data": []}, {"event": "e", "channel": ""}):
            ws.send({"trigger": body})
            assert error(ws)["code"] == 400, body
        ws.send({"trigger": {"event": "e", "channel": "bad name"}})
        assert error(ws) == {"code": 451, "status": "Invalid channel name"}
    finally:
        worker.close()


def test_close(connect):
    """C{close} makes the server close the connection (normal closure)."""
    ws = connect()
    ws.send({"close": {}})
    with pytest.raises(Closed) as closed:
        ws.recv()
    assert closed.value.code == 1000


# -- presence ----------------------------------------------------------------------


def test_presenceFiveClients(connect, backend):
    """The i-th joiner sees i-1 subscribers; joins and departures reach the right members."""
    name = fresh("presence-room")
    backend.openChannel(name)
    members = []
    for i in range(5):
        ws = authenticated(connect, backend, f"user{i}", "presence-.*")
        ws.send({"subscribe": {"channel": name, "data": {"nick": f"n{i}"}}})
        answer = ws.recvEvent(":subscribed")
        assert answer["channel"] == name and answer["uid"] == f"user{i}"
        assert answer["subscribers"] == [{"nick": f"n{j}", "uid": f"user{j}"} for j in range(i)]
        joined = {"nick": f"n{i}", "channel": name, "uid": f"user{i}"}
        assert ws.recvEvent(":memberJoined") == joined, "the joiner sees its own join"
        for other in members:
            assert other.recvEvent(":memberJoined") == joined
        members.append(ws)
    # A member that unsubscribes: the others are told, with its data.
    members[1].send({"unsubscribe": {"channel": name, "data": {"nick": "bye"}}})
    assert members[1].recvEvent(":unsubscribed") == {"channel": name}
    for i in (0, 2, 3, 4):
        assert members[i].recvEvent(":memberLeft") == {"nick": "bye", "channel": name, "uid": "user1"}
    members[1].expectNothing()
    # A member that just disconnects: the others are told too.
    members[3].close()
    for i in (0, 2, 4):
        assert members[i].recvEvent(":memberLeft") == {"nick": "n3", "channel": name, "uid": "user3"}
    # A hidden member is neither announced nor listed.
    hidden = authenticated(connect, backend, "spy", "presence-.*")
    hidden.send({"subscribe": {"channel": name, "data": {"nick": "spy"}, "hidden": True}})
    answer = hidden.recvEvent(":subscribed")
    assert [m["uid"] for m in answer["subscribers"]] == ["user0", "user2", "user4"]
    late = authenticated(connect, backend, "late", "presence-.*")
    late.send({"subscribe": {"channel": name}})
    assert [m["uid"] for m in late.recvEvent(":subscribed")["subscribers"]] == ["user0", "user2", "user4"]
    late.recvEvent(":memberJoined")
    assert hidden.recvEvent(":memberJoined")["uid"] == "late", "hidden members still see others"
    for i in (0, 2, 4):
        assert members[i].recvEvent(":memberJoined")["uid"] == "late"
    hidden.close()
    for i in (0, 2, 4):
        members[i].expectNothing(0.2)


# -- channels closed by the backend ----------------------------------------------------


def test_channelClosed(connect, backend, channel):
    """Closing a channel tells its subscribers and drops them."""
    first, second = connect(), connect()
    for ws in (first, second):
        ws.send({"subscribe": {"channel": channel}})
        ws.recvEvent(":subscribed")
    backend.closeChannel(channel)
    for ws in (first, second):
        assert ws.recvEvent(":channelClosed") == {"channel": channel}
    backend.openChannel(channel)
    assert backend.subscribers(channel) == 0
    first.send({"unsubscribe": {"channel": channel}})
    assert error(first)["code"] == 453
    backend.fire(channel, "hello", {})
    second.expectNothing()


# -- fan-out and the slow subscriber -------------------------------------------------


def test_fanOutSameBytes(connect, backend, channel):
    """Every subscriber receives every event, in order, with the same bytes."""
    clients = [connect() for _ in range(10)]
    for ws in clients:
        ws.send({"subscribe": {"channel": channel}})
        ws.recvEvent(":subscribed")
    for n in range(20):
        backend.fire(channel, "tick", {"n": n})
    frames = [[ws.recvFrame()[1] for _ in range(20)] for ws in clients]
    assert all(f == frames[0] for f in frames)
    assert [json.loads(f)["tick"]["n"] for f in frames[0]] == list(range(20))


def test_slowSubscriber(tmp_path):
    """
    A subscriber that stops reading is disconnected with close code 1008
    once its send queue overflows, and the others keep receiving.
    """
    rocketd = startDaemon(tmp_path, "[webrocket]\nsend_queue = 65536\n")
    backend = Backend(rocketd)
    slow = fast = None
    try:
        backend.openChannel("flood")
        slow = WebSocket(rocketd.port, "/moon", rcvbuf=4096)
        fast = WebSocket(rocketd.port, "/moon")
        for ws in (slow, fast):
            ws.recvEvent(":connected")
            ws.send({"subscribe": {"channel": "flood"}})
            ws.recvEvent(":subscribed")
        blob = "x" * 100_000
        count = 0
        # The slow client reads nothing: the kernel's buffers fill, then the
        # transport's, then the send queue overflows.
        while backend.subscribers("flood") == 2:
            assert count < 400, "the slow subscriber was never disconnected"
            backend.fire("flood", "blob", {"n": count, "blob": blob})
            count += 1
            assert fast.recv()["blob"]["n"] == count - 1, "the fast subscriber is not held up"
        assert backend.subscribers("flood") == 1
        # Reading now, the slow client finds what was written, then the close frame.
        with pytest.raises(Closed) as closed:
            while True:
                slow.recvFrame()
        assert closed.value.code == 1008
        assert "read too slowly and was disconnected (1 so far)" in rocketd.logTail(200)
        backend.fire("flood", "after", {})
        assert fast.recv() == {"after": {"channel": "flood"}}
    finally:
        for ws in (slow, fast):
            if ws is not None:
                ws.close()
        rocketd.close()
