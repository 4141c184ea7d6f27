"""
The WebRocket backend API of a real daemon (C{twistd -n rocketd} on a free
loopback port), over real HTTP with the standard library's client. The vhost
C{/moon} is declared in a config file; others are added through the admin
API. Every read that may wait has a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import struct
import time
import urllib.parse

import pytest

from . import client as base
from .client import DEADLINE, basic
from .daemon import Daemon

MOON = "37383acee7109d3136e87fe4af9cf3deb2dc8fef"


@pytest.fixture
def moon(tmp_path):
    """A daemon of its own for each test, with a config file that declares /moon."""
    config = tmp_path / "rocketd.conf"
    config.write_text("[vhost /moon]\ntoken = %s\n" % MOON)
    rocketd = Daemon()
    rocketd.start(extraArgs=("--config", str(config)), stateDir=str(tmp_path / "state"))
    yield rocketd
    rocketd.close()


class Client(base.Client):
    """Requests to the daemon, one connection each (as curl does)."""

    def connect(self, rcvbuf=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
        if rcvbuf is not None:
            # A small receive buffer, set before connecting, so that a
            # worker that stops reading fills up soon.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(DEADLINE)
            sock.connect((self.host, self.port))
            connection.sock = sock
        return connection

    def request(self, method, path, token=MOON, user="wr", body=None, headers=None):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = basic(user, token)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        return self.send(self.connect(), method, path, body, headers)

    def trigger(self, event, channel=None, data=None, vhost="/moon", token=MOON):
        trigger = {"event": event}
        if channel is not None:
            trigger["channel"] = channel
        if data is not None:
            trigger["data"] = data
        response = self.request("POST", vhost + "/events", token=token, body={"trigger": trigger})
        assert response.status == 202, response
        return response.json()["id"]


class Worker:
    """A backend worker reading the SSE stream of a vhost."""

    def __init__(self, client, filter=".*", vhost="/moon", token=MOON, rcvbuf=None):
        self.connection = client.connect(rcvbuf)
        query = urllib.parse.urlencode({"filter": filter})
        self.connection.request("GET", "%s/events?%s" % (vhost, query), headers={"Authorization": basic("wr", token)})
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.buffer = b""
        self.events = []

    def poll(self, timeout=0.1):
        """Read what arrives within C{timeout} seconds, and parse the complete events."""
        self.connection.sock.settimeout(timeout)
        try:
            chunk = self.response.read1(65536)
        except socket.timeout:
            return
        assert chunk, "the stream ended"
        self.buffer += chunk
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            fields = {}
            for line in frame.decode().split("\n"):
                if line.startswith(":"):
                    continue  # the opening comment, heartbeats
                name, _, value = line.partition(": ")
                fields[name] = value
            if fields:
                self.events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))

    def read(self, until, deadline=DEADLINE):
        """Read events until C{until(self.events)} holds, or fail at the deadline."""
        end = time.monotonic() + deadline
        while not until(self.events):
            assert time.monotonic() < end, "timed out with %d events" % (len(self.events),)
            self.poll()
        return self.events

    def ids(self):
        return [i for i, _, _ in self.events]

    def abort(self):
        """Go away at once, unread data and all (the peer sees a reset)."""
        self.connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.response.close()
        self.connection.close()


def adminRequest(daemon, method, path):
    parts = urllib.parse.urlsplit(daemon.adminUrl)
    cookie = open(os.path.join(daemon.stateDir, "admin.cookie")).read().strip()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=DEADLINE)
    try:
        connection.request(method, path, headers={"X-Rocketd-Cookie": cookie})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_backendAPIWithAndWithoutToken(moon):
    c = Client(moon.url)
    # Unknown vhost first, whatever the credentials.
    for token in (None, MOON):
        response = c.request("GET", "/venus/channels", token=token)
        assert response.status == 404 and "error" in response.json()
    # Then the credentials.
    for token, user in [(None, "wr"), ("0" * 40, "wr"), (MOON, "root")]:
        response = c.request("GET", "/moon/channels", token=token, user=user)
        assert response.status == 401, response
        assert response.header("www-authenticate") == 'Basic realm="rocketd"'
        assert response.header("content-type") == "application/json"
        assert response.json()["error"]
    assert c.request("GET", "/moon/channels").json() == {"channels": []}
    # Then the requests.
    response = c.request("POST", "/moon/channels/asteroids")
    assert response.status == 202
    assert response.header("location") == "/moon/channels/asteroids"
    assert c.request("POST", "/moon/channels/asteroids").status == 202
    assert c.request("POST", "/moon/channels/-bad").status == 400
    assert c.request("GET", "/moon/channels").json() == {"channels": [{"name": "asteroids", "subscribers": 0}]}
    fire = {"trigger": {"event": "hello", "data": {"from": "nu7hatch"}}}
    assert c.request("POST", "/moon/channels/asteroids/events", body=fire).status == 202
    assert c.request("POST", "/moon/channels/nowhere/events", body=fire).status == 404
    assert c.request("POST", "/moon/channels/asteroids/events", body=b"{nope").status == 400
    response = c.request("GET", "/moon/token?uid=joe&channels=" + urllib.parse.quote(".*foo|bar.*"))
    assert response.status == 200
    assert re.fullmatch("[0-9a-f]{128}", response.json()["token"])
    assert c.request("GET", "/moon/token?uid=joe&channels=(").status == 400
    assert c.request("GET", "/moon/events?filter=(").status == 400
    assert c.request("DELETE", "/moon/channels/asteroids").status == 202
    assert c.request("DELETE", "/moon/channels/asteroids").status == 404


def test_workersWithOverlappingFiltersShareTheEvents(moon):
    c = Client(moon.url)
    chat = Worker(c, "chat/.*")
    hello = Worker(c, ".*/hello")
    try:
        expected = {}
        for i in range(10):
            expected[c.trigger("hello", "chat", {"n": i})] = "chat/hello"
        for i in range(3):
            expected[c.trigger("hello", "news", {"n": i})] = "news/hello"
            expected[c.trigger("bye", "chat", {"n": i})] = "chat/bye"
        end = time.monotonic() + DEADLINE
        while len(chat.events) + len(hello.events) < len(expected):
            assert time.monotonic() < end, "timed out"
            chat.poll()
            hello.poll()
        # Anything extra (a duplicate) would arrive now.
        chat.poll(0.3)
        hello.poll(0.3)
        received = chat.events + hello.events
        assert sorted(i for i, _, _ in received) == sorted(expected)  # each event exactly once
        assert all(expected[i] == event for i, event, _ in received)
        assert {event for _, event, _ in chat.events} <= {"chat/hello", "chat/bye"}
        assert {event for _, event, _ in hello.events} <= {"chat/hello", "news/hello"}
        assert "chat/hello" in {e for _, e, _ in chat.events} and "chat/hello" in {e for _, e, _ in hello.events}
        listed = adminRequest(moon, "GET", "/vhosts/moon/workers")[1]["workers"]
        assert sorted(w["filter"] for w in listed) == [".*/hello", "chat/.*"]
    finally:
        chat.abort()
        hello.abort()


def test_workerThatDisconnectsLosesNothingUnwritten(moon):
    """
    A worker stops reading, so that the server holds its events in its pipe,
    then goes: the next worker receives, in order, every event from the
    first one that was not written to the socket, up to the last.
    """
    c = Client(moon.url)
    first = Worker(c, rcvbuf=4096)
    payload = {"blob": "x" * 20000}
    ids = [c.trigger("tick", "load", payload) for _ in range(3)]
    first.read(lambda events: len(events) >= 3)
    assert first.ids() == ids
    ids += [c.trigger("tick", "load", payload) for _ in range(200)]
    first.abort()
    second = Worker(c)
    try:
        second.read(lambda events: events and events[-1][0] == ids[-1])
        tail = second.ids()
        assert tail[0] > ids[2]  # nothing the first worker read comes again
        assert tail == ids[ids.index(tail[0]):]  # and nothing after it is lost
        assert all(data == payload for _, _, data in second.events)
    finally:
        second.abort()


def test_vhostSurvivesARestartWithItsToken(moon):
    c = Client(moon.url)
    status, vhost = adminRequest(moon, "POST", "/vhosts/apps/chat")
    assert status == 201, vhost
    token = vhost["token"]
    assert re.fullmatch("[0-9a-f]{40}", token)
    assert c.request("POST", "/apps/chat/channels/room", token=token).status == 202
    registry = os.path.join(moon.stateDir, "vhosts.json")
    assert stat.S_IMODE(os.stat(registry).st_mode) == 0o600
    moon.restart()
    c = Client(moon.url)
    assert c.request("GET", "/apps/chat/channels", token=token).status == 200
    assert c.request("GET", "/apps/chat/channels", token=MOON).status == 401
    assert c.request("GET", "/moon/channels", token=MOON).status == 200
    status, listed = adminRequest(moon, "GET", "/vhosts")
    assert {(v["path"], v["token"]) for v in listed["vhosts"]} == {("/apps/chat", token), ("/moon", MOON)}


def test_restmsClientFollowsAChannel(moon):
    """A RestMS pipe joined to a channel's feed receives the events fired on it."""
    c = Client(moon.url)
    assert c.request("POST", "/moon/channels/asteroids").status == 202
    # A vhost's domain is reached with the vhost's credentials only.
    assert c.request("GET", "/restms/domain/moon", token=None).status == 404
    assert c.request("GET", "/restms/domain/moon", token="0" * 40).status == 404
    domain = c.request("GET", "/restms/domain/moon", headers={"Accept": "application/restms+json"})
    assert domain.status == 200, domain
    assert "pipe" not in domain.json()["restms"]["domain"][0]
    feeds = domain.json()["restms"]["domain"][0]["feed"]
    href = [f["href"] for f in feeds if f.get("name") == "asteroids"][0]
    restms = lambda inner: ('<restms xmlns="http://www.imatix.com/schema/restms">%s</restms>' % inner).encode()
    xml = {"Content-Type": "application/restms+xml"}
    created = c.request("POST", "/restms/domain/", token=None, body=restms('<pipe type="fifo"/>'), headers=xml)
    assert created.status == 201, created
    pipe = urllib.parse.urlsplit(created.header("location")).path
    joined = c.request("POST", pipe, token=None, body=restms('<join address="*" feed="%s"/>' % href), headers=xml)
    assert joined.status == 201, joined
    fire = {"trigger": {"event": "hello", "data": {"from": "joe"}}}
    assert c.request("POST", "/moon/channels/asteroids/events", body=fire).status == 202
    document = c.request("GET", pipe, token=None, headers={"Accept": "application/restms+json"}).json()
    messages = [m for m in document["restms"]["pipe"][0].get("message", []) if m.get("address")]
    assert [m["address"] for m in messages] == ["hello"]
    message = c.request("GET", urllib.parse.urlsplit(messages[0]["href"]).path, token=None,
                        headers={"Accept": "application/restms+json"}).json()
    content = message["restms"]["message"][0]["content"][0]
    assert content["type"] == "application/json"
    body = c.request("GET", urllib.parse.urlsplit(content["href"]).path, token=None)
    assert (body.header("content-type"), body.json()) == (
        "application/json",
        {"hello": {"from": "joe", "channel": "asteroids"}},
    )
