"""
A Python client of rocketd on treq: RestMS (feeds, pipes, joins,
publishing, receiving) and the WebRocket backend (channels, events,
browser tokens, the worker event stream).

Every method is a coroutine: C{await} it in an C{async def} driven by
Twisted (C{Deferred.fromCoroutine}, C{ensureDeferred}, C{task.react}).
Receiving is an C{async for}. An error answer raises L{RocketdError} with
the status and the server's sentence. See docs/client.md.

    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react
    from rocketd.client import RestMS

    async def main(reactor):
        r = RestMS("http://127.0.0.1:8080")
        feed = await r.createFeed("news", "fanout")
        pipe = await r.createPipe()
        await r.join(pipe, feed)
        await r.publish(feed, "hello", address="greeting")
        async for message in r.messages(pipe):
            print(message.address, message.text)
            break

    react(lambda reactor: ensureDeferred(main(reactor)))
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import AsyncIterator, Dict, Iterable, List, Optional, Union
from urllib.parse import urlencode, urljoin

import treq
from twisted.internet.defer import DeferredQueue
from twisted.internet.protocol import Protocol

__all__ = ["RocketdError", "Message", "RestMS", "WebRocketBackend", "WorkerEvent"]

JSON = "application/restms+json"
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class RocketdError(Exception):
    """
    An answer that is not a success.

    @ivar status: the HTTP status.
    @ivar sentence: the server's sentence (its JSON C{error}, or its text).
    """

    def __init__(self, status: int, sentence: str):
        Exception.__init__(self, f"{status}: {sentence}")
        self.status = status
        self.sentence = sentence


async def _check(response, expected=(200, 201, 202, 204)) -> bytes:
    body = await treq.content(response)
    if response.code in expected:
        return body
    text = body.decode("utf-8", "replace").strip()
    try:
        text = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        pass
    raise RocketdError(response.code, text)


@dataclass
class Message:
    """
    A message received from a pipe.

    @ivar href: its URI (delete it there).
    @ivar address: its routing address.
    @ivar properties: the other properties (C{reply_to}, C{message_id}...).
    @ivar headers: the application headers.
    @ivar contents: C{[(content type, bytes)]}.
    """

    href: str
    address: str = ""
    properties: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    contents: List[tuple] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The first content as text (C{""} without one)."""
        return self.contents[0][1].decode("utf-8", "replace") if self.contents else ""


def _message(document: dict, href: str) -> Message:
    m = document["restms"]["message"][0]
    contents = []
    for c in m.get("content", []):
        data = c.get("$text", "")
        raw = base64.b64decode(data) if c.get("encoding") == "base64" else data.encode("utf-8")
        contents.append((c.get("type", "application/octet-stream"), raw))
    headers = {h["name"]: h.get("value", "") for h in m.get("header", [])}
    properties = {k: v for k, v in m.items() if isinstance(v, str) and k not in ("href", "address", "$text")}
    return Message(m.get("href", href), m.get("address", ""), properties, headers, contents)


class RestMS:
    """
    A RestMS client of one server.

    @param url: the server's base URL (C{http://127.0.0.1:8080}).
    @param http: a C{treq} HTTPClient (for a pool or an agent of one's
        own); treq's default otherwise.
    @param headers: more headers for every request (C{Authorization} for
        a vhost's domain).
    """

    def __init__(self, url: str, http=None, headers: Optional[Dict[str, str]] = None):
        self.url = url.rstrip("/")
        self._http = http or treq
        self._headers = dict(headers or {})
        self._etags: Dict[str, tuple] = {}

    def _uri(self, what: str) -> str:
        return urljoin(self.url + "/", what) if not what.startswith("http") else what

    async def _request(self, method, uri, document=None, headers=None, expected=(200, 201, 202, 204)):
        h = {"Accept": JSON, **self._headers, **(headers or {})}
        data = None
        if document is not None:
            h["Content-Type"] = JSON
            data = json.dumps({"restms": document}).encode("utf-8")
        response = await self._http.request(method, self._uri(uri), data=data, headers=h)
        body = await _check(response, expected)
        return response, body

    async def get(self, uri: str) -> dict:
        """
        GET a resource's document, revalidated with its ETag: an unchanged
        resource (304) gives the document read before.
        """
        uri = self._uri(uri)
        cached = self._etags.get(uri)
        headers = {"If-None-Match": cached[0]} if cached else {}
        response, body = await self._request("GET", uri, headers=headers, expected=(200, 304))
        if response.code == 304 and cached:
            return cached[1]
        document = json.loads(body)
        etag = response.headers.getRawHeaders("etag")
        if etag:
            self._etags[uri] = (etag[0], document)
        return document

    async def _create(self, parent: str, kind: str, attributes: dict) -> str:
        response, _ = await self._request("POST", parent, {kind: [attributes]}, expected=(200, 201))
        return response.headers.getRawHeaders("location")[0]

    async def createFeed(self, name: Optional[str] = None, type: str = "topic", title: str = "",
                         domain: str = "/restms/domain/") -> str:
        """@return: the feed's URI (an existing public feed of that name and type is reused)."""
        attributes = {"type": type, "title": title}
        if name is not None:
            attributes["name"] = name
        return await self._create(domain, "feed", attributes)

    async def createPipe(self, type: str = "fifo", title: str = "", domain: str = "/restms/domain/") -> str:
        """@return: the new pipe's URI."""
        return await self._create(domain, "pipe", {"type": type, "title": title})

    async def join(self, pipe: str, feed: str, address: str = "*", headers: Optional[Dict[str, str]] = None) -> str:
        """@return: the join's URI (an identical join is reused)."""
        attributes = {"feed": self._uri(feed), "address": address}
        if headers:
            attributes["header"] = [{"name": k, "value": v} for k, v in headers.items()]
        return await self._create(pipe, "join", attributes)

    async def delete(self, uri: str) -> None:
        """DELETE a feed, pipe, join or message (a fifo pipe's message: and the older ones)."""
        await self._request("DELETE", uri)
        self._etags.pop(self._uri(uri), None)

    async def publish(self, feed: str, content: Union[str, bytes, None] = None, address: str = "",
                      contentType: str = "text/plain", headers: Optional[Dict[str, str]] = None,
                      **properties: str) -> None:
        """Publish one message (see L{publishMany})."""
        await self.publishMany(feed, [dict(content=content, address=address, contentType=contentType,
                                           headers=headers, **properties)])

    async def publishMany(self, feed: str, messages: Iterable[dict]) -> None:
        """
        Publish several messages in one request, routed in order. Each is a
        dict of C{content} (text or bytes), C{address}, C{contentType},
        C{headers} and properties (C{reply_to}, C{message_id}...).
        """
        documents = []
        for m in messages:
            m = dict(m)
            content = m.pop("content", None)
            contentType = m.pop("contentType", "text/plain")
            headers = m.pop("headers", None) or {}
            document = {k: str(v) for k, v in m.items() if v is not None}
            if headers:
                document["header"] = [{"name": k, "value": str(v)} for k, v in headers.items()]
            if content is not None:
                if isinstance(content, bytes):
                    c = {"type": contentType, "encoding": "base64", "$text": base64.b64encode(content).decode()}
                else:
                    c = {"type": contentType, "$text": content}
                document["content"] = [c]
            documents.append(document)
        await self._request("POST", feed, {"message": documents})

    async def asynclet(self, pipe: str, held: bool = False) -> str:
        """
        @param held: if True, the pipe's oldest held message when it has one.
        @return: the URI of the pipe's next message (its asynclet).
        """
        document = await self.get(pipe)
        messages = document["restms"]["pipe"][0].get("message", [])
        for m in messages:
            if held or m.get("async") == "1":
                return m["href"]
        raise RocketdError(500, "The pipe document lists no asynclet.")

    async def messages(self, pipe: str, delete: bool = True, timeout: Optional[float] = None) -> AsyncIterator[Message]:
        """
        The pipe's messages, those it holds first, then as they arrive, by
        the asynclet loop: GET the message or the asynclet (which waits;
        204 after the long poll: again), yield the
        message, DELETE it (unless C{delete} is False) when the loop asks
        for the next one, follow its C{Link: rel="next"}. The message a
        loop is left on stays held (at least once): delete it with
        L{delete}C{(message.href)}. Ends when the pipe is deleted (404).

        @param timeout: the longest wait of one GET, in seconds.
        """
        uri = await self.asynclet(pipe, held=True)
        suffix = f"?timeout={timeout:g}" if timeout is not None else ""
        while True:
            try:
                response, body = await self._request("GET", uri + suffix, expected=(200, 204))
            except RocketdError as e:
                if e.status == 404:
                    return
                raise
            if response.code == 204:
                continue
            links = response.headers.getRawHeaders("link") or []
            nexts = [m.group(1) for link in links for m in _NEXT.finditer(link)]
            message = _message(json.loads(body), uri)
            yield message
            if delete:
                await self.delete(message.href)
            uri = nexts[0] if nexts else await self.asynclet(pipe)


@dataclass
class WorkerEvent:
    """An event the worker stream delivered: C{id}, C{event} (C{channel/event}) and C{data}."""

    id: str
    event: str
    data: dict


class _SSE(Protocol):
    """
    Reads a text/event-stream body (C{IResponse.deliverBody}): each event
    is a dict of its fields put on C{queue}, and None when the body ends.
    C{transport.stopProducing()} ends the connection.
    """

    def __init__(self, queue: DeferredQueue):
        self._queue = queue
        self._buffer = b""
        self._fields: Dict[str, str] = {}

    def connectionLost(self, reason=None):
        self._queue.put(None)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if "data" in self._fields:
                    self._queue.put(dict(self._fields))
                self._fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                self._fields[name] = value[1:] if value.startswith(" ") else value


class WebRocketBackend:
    """
    The WebRocket backend API of one vhost.

    @param url: the server's base URL.
    @param vhost: the vhost path (C{/moon}).
    @param token: the vhost's token (HTTP Basic, user C{wr}).
    """

    def __init__(self, url: str, vhost: str, token: str, http=None):
        self.url = url.rstrip("/") + "/" + vhost.strip("/")
        self._http = http or treq
        self._auth = "Basic " + base64.b64encode(f"wr:{token}".encode()).decode()

    async def _request(self, method, path, body=None):
        headers = {"Authorization": self._auth}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        response = await self._http.request(method, self.url + path, data=data, headers=headers)
        body = await _check(response)
        return json.loads(body) if body.strip() else {}

    async def openChannel(self, name: str) -> None:
        await self._request("POST", "/channels/" + name)

    async def closeChannel(self, name: str) -> None:
        await self._request("DELETE", "/channels/" + name)

    async def channels(self) -> List[dict]:
        return (await self._request("GET", "/channels"))["channels"]

    async def broadcast(self, channel: str, event: str, data: Optional[dict] = None) -> None:
        """Fire C{event} to every subscriber of C{channel}."""
        await self._request("POST", f"/channels/{channel}/events", {"trigger": {"event": event, "data": data or {}}})

    async def trigger(self, event: str, data: Optional[dict] = None, channel: Optional[str] = None) -> int:
        """Fire a worker event (as a browser would); @return: its id."""
        trigger = {"event": event, "data": data or {}}
        if channel is not None:
            trigger["channel"] = channel
        return (await self._request("POST", "/events", {"trigger": trigger})).get("id")

    async def browserToken(self, uid: str, channels: str = ".*") -> str:
        """@return: a single-use token for a browser allowed onto the channels matching C{channels}."""
        return (await self._request("GET", "/token?" + urlencode({"uid": uid, "channels": channels})))["token"]

    async def workerEvents(self, filter: str = ".*", reconnect: bool = True) -> AsyncIterator[WorkerEvent]:
        """
        The worker event stream as an C{async for}; when the connection
        ends it reconnects (unless C{reconnect} is False) with
        C{Last-Event-ID}, so that no event held for it is lost.
        """
        lastId = None
        while True:
            headers = {"Authorization": self._auth, "Accept": "text/event-stream"}
            if lastId is not None:
                headers["Last-Event-ID"] = lastId
            response = await self._http.request(
                "GET", self.url + "/events?" + urlencode({"filter": filter}), headers=headers, unbuffered=True
            )
            if response.code != 200:
                await _check(response, ())
            queue = DeferredQueue()
            stream = _SSE(queue)
            response.deliverBody(stream)
            ended = False
            try:
                while True:
                    fields = await queue.get()
                    if fields is None:
                        ended = True
                        break
                    lastId = fields.get("id", lastId)
                    yield WorkerEvent(fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"]))
            finally:
                if not ended and stream.transport is not None:
                    # The caller left the loop: close the stream.
                    stream.transport.stopProducing()
            if not reconnect:
                return
