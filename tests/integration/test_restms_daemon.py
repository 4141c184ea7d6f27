"""
The RestMS face of a real daemon (C{twistd -n rocketd} on a free loopback
port, started by the C{daemon} fixture), over real HTTP with the standard
library's client. Every read that may wait has a deadline.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from . import client as base
from .client import DEADLINE

XML = "application/restms+xml"
JSON = "application/restms+json"


def restms(inner: str) -> bytes:
    return ('<?xml version="1.0"?><restms xmlns="http://www.imatix.com/schema/restms">%s</restms>' % inner).encode()


class Response(base.Response):
    def attr(self, element, name, **where):
        """The attribute C{name} of the first C{<element>} (whose other attributes match C{where})."""
        for tag in re.finditer(r"<%s\b([^>]*)>" % element, self.body.decode()):
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', tag.group(1)))
            if all(attrs.get(k) == v for k, v in where.items()):
                return attrs.get(name)
        return None


class Client(base.Client):
    """One request per connection, to the daemon's main listener."""

    response = Response

    def request(self, method, target, body=None, headers=None, timeout=DEADLINE):
        return self.send(self.connect(timeout), method, target, body, headers)

    def post(self, target, body, contentType=XML, **headers):
        return self.request("POST", target, body, dict(headers, **{"Content-Type": contentType}))

    def pipe(self, type="fifo"):
        response = self.post("/restms/domain/", restms('<pipe type="%s"/>' % type))
        assert response.status == 201, response
        return response.header("location"), response

    def asynclet(self, pipe):
        return self.request("GET", pipe).attr("message", "href", **{"async": "1"})

    def held(self, pipe):
        body = self.request("GET", pipe).body.decode()
        return [m for m in re.findall(r"<message\b([^>]*)/>", body) if 'async="1"' not in m]


def client(daemon):
    return Client(daemon.url)


def nextOf(response):
    return re.match(r"<([^>]+)>", response.header("link")).group(1)


def readUntil(connection, response, done, deadline=DEADLINE):
    """Read a streaming response until C{done(bytes so far)} or the deadline."""
    connection.sock.settimeout(0.2)
    data = b""
    end = time.monotonic() + deadline
    while not done(data):
        assert time.monotonic() < end, "timed out; got %r" % data
        try:
            chunk = response.read1(65536)
        except socket.timeout:
            continue
        assert chunk, "the stream ended; got %r" % data
        data += chunk
    return data


def test_serviceScenario(daemon):
    """Service request/response: the requestor's asynclet waits for the answer."""
    c = client(daemon)
    assert c.post("/restms/domain/", restms('<feed name="clock" type="service"/>')).status == 201
    service, _ = c.pipe()
    assert c.post(service, restms('<join feed="/restms/feed/clock"/>')).status == 201
    serviceAsynclet = c.asynclet(service)
    requestor, created = c.pipe()
    replyTo = created.attr("pipe", "name")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(c.request, "GET", c.asynclet(requestor))
        assert c.post("/restms/feed/", restms('<message address="clock" reply_to="%s"/>' % replyTo)).status == 200
        request = c.request("GET", serviceAsynclet)
        assert request.status == 200
        assert request.attr("message", "reply_to") == replyTo
        reply = '<message address="%s"><content type="text/plain">noon</content></message>' % replyTo
        assert c.post("/restms/feed/", restms(reply)).status == 200
        response = answer.result(DEADLINE)
    assert response.status == 200
    content = c.request("GET", response.attr("content", "href"))
    assert (content.body, content.header("content-type")) == (b"noon", "text/plain")


def test_newsfeedScenario(daemon):
    c = client(daemon)
    assert c.post("/restms/domain/", restms('<feed name="usenet" type="topic"/>')).status == 201
    pipe, _ = c.pipe()
    assert c.post(pipe, restms('<join address="rec.pets.*" feed="usenet"/>')).status == 201
    messages = "".join(
        '<message address="%s" message_id="%d"/>' % (address, i)
        for i, address in enumerate(["rec.pets.cats", "rec.cars", "rec.pets.dogs", "rec.pets.fish"])
    )
    assert c.post("/restms/feed/usenet", restms(messages)).status == 200
    assert [re.search(r'message_id="(\d+)"', m).group(1) for m in c.held(pipe)] == ["0", "2", "3"]


def test_fifoRoundTrip(daemon):
    """POST, asynclet GET, DELETE, then the Link's next: JSON this time."""
    c = client(daemon)
    assert c.post("/restms/domain/", restms('<feed name="fifo-rt" type="fanout"/>')).status == 201
    pipe, _ = c.pipe()
    c.post(pipe, restms('<join feed="/restms/feed/fifo-rt"/>'))
    uri = c.asynclet(pipe)
    body = {"restms": {"message": [{"address": "a%d" % i} for i in range(3)]}}
    assert c.post("/restms/feed/fifo-rt", json.dumps(body).encode(), JSON).status == 200
    seen = []
    for _ in range(3):
        response = c.request("GET", uri, headers={"Accept": JSON})
        assert response.status == 200, response
        seen.append(json.loads(response.body)["restms"]["message"][0]["address"])
        assert c.request("DELETE", uri).status == 200
        uri = nextOf(response)
    assert seen == ["a0", "a1", "a2"]
    assert c.held(pipe) == []


def test_asyncletTimesOut(daemon):
    c = client(daemon)
    pipe, _ = c.pipe()
    started = time.monotonic()
    response = c.request("GET", c.asynclet(pipe) + "?timeout=1")
    elapsed = time.monotonic() - started
    assert response.status == 204
    assert response.body == b""
    assert 0.9 <= elapsed < DEADLINE


def streamPipe(c, feedName):
    assert c.post("/restms/domain/", restms('<feed name="%s" type="fanout"/>' % feedName)).status == 201
    pipe, _ = c.pipe("stream")
    assert c.post(pipe, restms('<join feed="/restms/feed/%s"/>' % feedName)).status == 201
    return pipe


def test_streamAsSSE(daemon):
    c = client(daemon)
    pipe = streamPipe(c, "sse-feed")
    c.post("/restms/feed/sse-feed", restms('<message address="first"/>'))
    connection = c.connect()
    try:
        connection.request("GET", urllib.parse.urlsplit(pipe).path, headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type").startswith("text/event-stream")
        c.post("/restms/feed/sse-feed", restms('<message address="second"/>'))
        data = readUntil(connection, response, lambda d: d.count(b"\ndata: ") >= 2)
    finally:
        connection.close()
    events = re.findall(rb"id: (\d+)\nevent: (\S+)\ndata: (.*)\n\n", data)
    assert [(i, e) for i, e, _ in events] == [(b"1", b"first"), (b"2", b"second")]
    assert json.loads(events[1][2])["restms"]["message"][0]["address"] == "second"


def test_streamAsMultipart(daemon):
    c = client(daemon)
    pipe = streamPipe(c, "mp-feed")
    connection = c.connect()
    try:
        connection.request("GET", urllib.parse.urlsplit(pipe).path, headers={"Accept": "multipart/mixed"})
        response = connection.getresponse()
        assert response.status == 200
        boundary = re.search(r'boundary="([^"]+)"', response.getheader("content-type")).group(1).encode()
        c.post("/restms/feed/mp-feed", restms('<message address="p1"/><message address="p2"/>'))
        data = readUntil(connection, response, lambda d: d.count(b"</restms>") >= 2)
    finally:
        connection.close()
    parts = data.split(b"--" + boundary + b"\r\n")[1:]
    assert len(parts) == 2
    for part, address in zip(parts, (b"p1", b"p2")):
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"Content-Type: application/restms+xml" in head
        location = re.search(rb"Content-Location: (\S+)", head).group(1)
        assert b'href="%s"' % location in body
        assert b'address="%s"' % address in body
    # Written means deleted.
    assert c.held(pipe) == []


def test_contentsReadThenDeleted(daemon):
    """
    What the drafts' client libraries do with each message they receive:
    GET each content, DELETE it, then DELETE the message.
    """
    c = client(daemon)
    assert c.post("/restms/domain/", restms('<feed name="receive" type="fanout"/>')).status == 201
    pipe, _ = c.pipe()
    assert c.post(pipe, restms('<join feed="/restms/feed/receive"/>')).status == 201
    uri = c.asynclet(pipe)
    message = (
        '<message address="m" message_id="1"><content type="text/plain">first</content>'
        '<content type="text/html">&lt;p&gt;second</content></message>'
    )
    assert c.post("/restms/feed/receive", restms(message)).status == 200
    received = c.request("GET", uri)
    assert received.status == 200, received
    hrefs = re.findall(r'<content [^>]*href="([^"]*)"', received.body.decode())
    assert len(hrefs) == 2
    first = c.request("GET", hrefs[0])
    assert (first.status, first.body, first.header("content-type")) == (200, b"first", "text/plain")
    deleted = c.request("DELETE", hrefs[0])
    assert deleted.status == 200, deleted
    assert c.request("GET", hrefs[0]).status == 404
    # The message stays held, listing the content it has left.
    assert len(c.held(pipe)) == 1
    again = c.request("GET", uri)
    assert again.status == 200
    assert 'message_id="1"' in again.body.decode()
    assert re.findall(r'<content [^>]*href="([^"]*)"', again.body.decode()) == [hrefs[1]]
    assert c.request("GET", hrefs[1]).body == b"<p>second"
    assert c.request("DELETE", hrefs[1]).status == 200
    assert c.request("DELETE", uri).status == 200
    assert c.held(pipe) == []


def test_stagedContentDeleted(daemon):
    """A staged content nobody claimed can be deleted; then it is gone."""
    c = client(daemon)
    assert c.post("/restms/domain/", restms('<feed name="stage-delete" type="fanout"/>')).status == 201
    staged = c.post("/restms/feed/stage-delete", b"draft", "text/plain")
    assert staged.status == 201, staged
    location = staged.header("location")
    assert c.request("GET", location).body == b"draft"
    assert c.request("DELETE", location).status == 200
    assert c.request("GET", location).status == 404
    unclaimable = c.post("/restms/feed/stage-delete", restms('<message><content href="%s"/></message>' % location))
    assert unclaimable.status == 404


def test_conditionalGet(daemon):
    c = client(daemon)
    first = c.request("GET", "/restms/feed/default")
    assert first.status == 200
    again = c.request("GET", "/restms/feed/default", headers={"If-None-Match": first.header("etag")})
    assert again.status == 304
    assert again.body == b""
    since = c.request("GET", "/restms/feed/default", headers={"If-Modified-Since": first.header("last-modified")})
    assert since.status == 304


def test_bodyTooLarge(daemon):
    c = client(daemon)
    body = b"<restms>" + b" " * (2 * 1024 * 1024) + b"</restms>"
    sock = socket.create_connection((c.host, c.port), timeout=DEADLINE)
    try:
        sock.sendall(
            b"POST /restms/feed/default HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (c.host.encode(), c.port, XML.encode(), len(body))
        )
        try:
            sock.sendall(body)
        except OSError:
            pass  # the server may close before it has read it all
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    assert b"text/plain; charset=utf-8" in data


def test_doctypeBomb(daemon):
    c = client(daemon)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)
        )
        + b']><restms><feed name="&lol9;"/></restms>'
    )
    response = c.post("/restms/domain/", bomb)
    assert response.status == 400
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert b"DOCTYPE" in response.body
    assert c.request("GET", "/restms/domain/").status == 200


def test_streamsEndCleanly(daemon):
    """Clients that left (long polls, streams) cost the daemon no error: nothing in its log."""
    c = client(daemon)
    pipe = streamPipe(c, "leaving")
    connection = c.connect()
    connection.request("GET", urllib.parse.urlsplit(pipe).path, headers={"Accept": "text/event-stream"})
    assert connection.getresponse().status == 200
    connection.close()
    waiting, _ = c.pipe()
    connection = c.connect()
    connection.request("GET", urllib.parse.urlsplit(c.asynclet(waiting)).path)
    connection.close()
    # The stream pipe gets its consumer back once the daemon has seen the client go.
    end = time.monotonic() + DEADLINE
    while True:
        again = c.connect()
        try:
            again.request("GET", urllib.parse.urlsplit(pipe).path, headers={"Accept": "text/event-stream"})
            status = again.getresponse().status
        finally:
            again.close()
        if status == 200:
            break
        assert status == 409 and time.monotonic() < end, status
        time.sleep(0.05)
    with open(daemon.logPath) as log:
        text = log.read()
    assert "Traceback" not in text
    assert "Unhandled" not in text
