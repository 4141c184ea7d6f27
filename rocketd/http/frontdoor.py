"""
The front door of the main listener (C{[rocketd] front_door}, on by default):
a protocol that parses HTTP/1.1 with C{httptools} (the C parser of the
uvloop project), serves the hot routes itself, and hands every other
request to the twisted.web L{Site}.

  - A hot request (the injected C{route} gives its handler) is answered by
    that handler, the same one the twisted.web path calls
    (L{rocketd.http.exchange}): the front door only frames the response
    value as twisted.web would (C{Server}, C{Date}, the default
    C{Content-Type}, C{Connection: close}), in request order.
  - The first request it does not serve switches the connection over, with
    public API only: the site builds its protocol, which is connected to the
    same transport and given the bytes; from then on the front door only
    forwards. The switch waits until every earlier hot answer is written.
  - Where the cold request begins: C{httptools} consumes a whole read and
    tells no offsets. When the cold request's first byte began a read (the
    common case: a client that sends one request at a time), the bytes
    from there on are handed over as they came. When a hot request ended
    earlier in the same read (pipelining), the cold request, and every
    later one on that connection, is re-serialised from its parsed pieces
    (request line, headers in order, body; a chunked body is re-chunked,
    its trailers dropped) into the site's protocol. The C{llhttp} binding
    could pause at the exact offset, but it has one maintainer and few
    users; pipelining after a hot request is rare, and its cost is only
    that of twisted.web's parse.

The guarantees of the twisted.web path hold here too: a request head has
C{site.headTimeout} seconds (408, see L{rocketd.http.connections}), and
the connection waits in C{site.waitingHeads} meanwhile (so the connection
cap may evict it); a body over C{site.maxBody} is refused with the site's
413 before it is read; a head of more than L{MAX_HEADERS} headers or
L{MAX_HEAD_BYTES} bytes is refused with 431, a malformed one with 400,
and the connection closed; the C{Host} is neutralised; a handler's failure
is answered with the site's last-resort 500; the transport's write buffer
pauses reading (backpressure).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import httptools
from twisted.internet.defer import CancelledError, maybeDeferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.web.http import NO_BODY_CODES, NOT_MODIFIED, NO_CONTENT, RESPONSES, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.server import version as SERVER
from zope.interface import implementer

from rocketd.http.connections import RESPONSE_408, HeadClock
from rocketd.http.directwrite import sendBuffered
from rocketd.http.exchange import Exchange, HTTPResponse
from rocketd.http.guard import plainInternalError
from rocketd.http.hosts import neutraliseHost
from rocketd.http.limits import plainTooLarge

#: The most headers a request head may have (as twisted.web's channel).
MAX_HEADERS = 500
#: The most bytes a request line and headers may take (as twisted.web's channel).
MAX_HEAD_BYTES = 16384

#: The answer to a request the parser refuses (as twisted.web's channel).
RESPONSE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_BODY_431 = b"The request head is larger than the server accepts.\n"
RESPONSE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % (len(_BODY_431),)
) + _BODY_431
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

#: A route: C{(method, path, headers) -> handler or None}, where a handler
#: is C{(exchange) -> Deferred} of an L{HTTPResponse} (or of None when the
#: client went away).
Route = Callable[[bytes, bytes, Headers], Optional[Callable]]


class _Stop(Exception):
    """Raised in a parser callback to stop parsing the current read."""


class _Date:
    """The C{Date} value, made once a second."""

    def __init__(self):
        self._second = None
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, datetimeToString(now)
        return self._value


_date = _Date()


class _Slot:
    """One hot request's place in the answer order."""

    __slots__ = ("exchange", "deferred", "data", "persistent")

    def __init__(self, exchange, persistent):
        self.exchange = exchange
        self.persistent = persistent
        self.deferred = None
        self.data = None


@implementer(IPushProducer)
class FrontDoor(HeadClock, Protocol, TimeoutMixin):
    """
    One connection of the main listener (see the module docstring).

    @param site: the L{rocketd.http.guard.GuardedSite} that serves the cold
        requests, and whose limits (C{maxBody}, C{headTimeout},
        C{timeout}), answers (C{tooLargeBody}, C{internalError}) and log
        the front door uses.
    @param route: the L{Route} of the hot requests.
    """

    log = Logger()

    # One connection each, and a stream or WebSocket keeps its front door
    # for its life: slots, no instance dictionary.
    __slots__ = (
        "site", "_route", "_queue", "_toInner", "_handover", "_parser", "callLater", "transport", "connected",
        "factory", "timeOut", "_TimeoutMixin__timeoutCall", "_mode", "_inner", "_headCall", "_headBytes",
        "_waiting", "_closing", "_readPaused", "_writePaused", "_idle", "_clean", "_raw", "_completedInRead",
        "_url", "_headers", "_headSize", "_body", "_bodySize", "_handler", "_chunked", "_version", "_target",
        "_requestHeaders", "_method",
    )

    def __init__(self, site, route: Route):
        self.site = site
        self._route = route
        self._queue = []
        self._toInner = []
        self._handover = False
        self._parser = httptools.HttpRequestParser(self)
        # The idle timeout runs on the site's reactor, as its channels' do.
        self.callLater = site.reactor.callLater
        self.transport = self.factory = None
        self.connected = 0
        self.timeOut = self._TimeoutMixin__timeoutCall = None
        # What is done with the bytes: parsed here ("front"), re-serialised
        # into the site's protocol ("reserialise"), or forwarded to it ("raw").
        self._mode = "front"
        self._inner = self._headCall = self._waiting = self._raw = None
        self._headBytes = self._closing = self._readPaused = self._writePaused = False
        self._idle = self._clean = True
        self._completedInRead = self._chunked = False
        self._url = self._headers = self._body = self._requestHeaders = None
        self._headSize = self._bodySize = 0
        self._handler = self._version = self._target = self._method = None

    # -- the connection --------------------------------------------------------

    def connectionMade(self):
        self.transport.registerProducer(self, True)
        self.setTimeout(getattr(self.site, "timeout", None))
        self._startHead(received=False)

    def dataReceived(self, data):
        if self._mode == "raw":
            if self._inner is not None:
                self._inner.dataReceived(data)
            else:
                self._toInner.append(data)
            return
        if self._closing:
            return
        self.resetTimeout()
        if self._mode == "front":
            if self._idle:
                self._raw = [data]
                self._clean = True
            elif self._raw is not None:
                self._raw.append(data)
        self._completedInRead = False
        if self._headCall is not None:
            self._headBytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            # The request asks to switch protocols (a WebSocket): a cold
            # request, whose head is in; what follows it is the new protocol's.
            if self._mode == "reserialise":
                self._toInner.append(data[e.args[0]:] if e.args else b"")
                self._mode = "raw"
        except httptools.HttpParserCallbackError:
            if not self._handover and not self._closing:
                raise
        except httptools.HttpParserError:
            if self._mode == "reserialise":
                # A request line the site's channel refuses in turn, so
                # that the 400 comes after the answers before it.
                self._toInner.append(b"\x00 malformed request\r\n\r\n")
                self._closing = True
            elif not self._handover:
                self._refuse(RESPONSE_400)
                return
        if self._handover and self._mode == "front":
            # The cold request began this connection's pending bytes.
            self._mode = "raw"
            self._toInner.extend(self._raw)
            self._raw = None
        self._maybeHandOver()

    def connectionLost(self, reason):
        self.setTimeout(None)
        self._stopHead()
        while self._queue:
            slot = self._queue.pop(0)
            if slot.deferred is not None and slot.data is None:
                slot.exchange.abandon()
                slot.deferred.cancel()
        if self._inner is not None:
            self._inner.connectionLost(reason)

    def timeoutConnection(self):
        if self._inner is None:
            self.transport.loseConnection()

    # -- IPushProducer: the transport's write buffer ---------------------------

    def pauseProducing(self):
        self._writePaused = True
        self._pauseReading()

    def resumeProducing(self):
        self._writePaused = False
        if self._inner is None:
            self._resumeReading()

    def stopProducing(self):
        pass

    def _pauseReading(self):
        if not self._readPaused:
            self._readPaused = True
            self.transport.pauseProducing()

    def _resumeReading(self):
        if self._readPaused and not self._writePaused and not self._handover:
            self._readPaused = False
            self.transport.resumeProducing()

    # -- the request head's deadline (as rocketd.http.connections) -------------

    def _headLater(self, delay, f):
        return self.site.reactor.callLater(delay, f)

    def evict(self) -> None:
        """Close at once, without an answer, to make room (L{rocketd.http.connections.WaitingHeads})."""
        self._stopHead()
        self._closing = True
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.abortConnection()

    def _headTimedOut(self) -> None:
        self._headCall = None
        self._stopHead()
        counted = getattr(self.site, "headTimeouts", None)
        if counted is not None:
            self.site.headTimeouts = counted + 1
        self._refuse(RESPONSE_408 if self._headBytes else b"")

    def _refuse(self, answer: bytes) -> None:
        """Answer (after the earlier answers) and close; read nothing more."""
        self._stopHead()
        self._closing = True
        slot = _Slot(None, False)
        slot.data = answer
        self._queue.append(slot)
        self._flush()

    # -- httptools callbacks ---------------------------------------------------

    def on_message_begin(self):
        self._idle = False
        if self._completedInRead:
            self._clean = False
        self._url = []
        self._headers = []
        self._headSize = 0
        self._body = []
        self._bodySize = 0
        self._handler = None
        self._chunked = False
        if self._headCall is None and self._mode == "front":
            self._startHead(received=True)

    def on_url(self, url):
        self._url.append(url)
        self._headSize += len(url)
        if self._headSize > MAX_HEAD_BYTES:
            self._refuse(RESPONSE_431)
            raise _Stop()

    def on_header(self, name, value):
        self._headers.append((name, value))
        self._headSize += len(name) + len(value) + 4
        if self._headSize > MAX_HEAD_BYTES or len(self._headers) > MAX_HEADERS:
            self._refuse(RESPONSE_431)
            raise _Stop()

    def on_headers_complete(self):
        self._stopHead()
        parser = self._parser
        method = parser.get_method()
        self._version = b"HTTP/" + parser.get_http_version().encode("ascii")
        url = b"".join(self._url)
        self._target = url
        if self._mode == "reserialise":
            self._writeHead(method, url)
            return
        headers = Headers()
        for name, value in self._headers:
            headers.addRawHeader(name, value)
        self._requestHeaders = headers
        self._method = method
        handler = None
        if url[:1] == b"/" and self._version in (b"HTTP/1.1", b"HTTP/1.0") and not parser.should_upgrade():
            handler = self._route(method, url.split(b"?", 1)[0], headers)
        if handler is None:
            self._handover = True
            if self._clean:
                raise _Stop()
            self._mode = "reserialise"
            self._pauseReading()
            self._writeHead(method, url)
            return
        self._raw = None
        self._handler = handler
        length = headers.getRawHeaders(b"content-length")
        if length is not None:
            try:
                size = int(length[0])
            except ValueError:
                size = 0
            if size > self.site.maxBody:
                self._tooLarge()
                raise _Stop()
        self._chunked = headers.getRawHeaders(b"transfer-encoding") is not None
        expect = headers.getRawHeaders(b"expect")
        if expect and expect[0].lower() == b"100-continue" and self._version == b"HTTP/1.1":
            # After the answers before it, as twisted.web's channel, which
            # reads a pipelined request only once the one before is answered.
            slot = _Slot(None, True)
            slot.data = _CONTINUE
            self._queue.append(slot)
            self._flush()

    def on_body(self, body):
        if self._mode == "reserialise":
            if self._chunked:
                self._toInner.append(b"%x\r\n%s\r\n" % (len(body), body))
            else:
                self._toInner.append(body)
            return
        self._bodySize += len(body)
        if self._bodySize > self.site.maxBody:
            self._tooLarge()
            raise _Stop()
        self._body.append(body)

    def on_message_complete(self):
        self._completedInRead = True
        self._idle = True
        if self._mode == "reserialise":
            if self._chunked:
                self._toInner.append(b"0\r\n\r\n")
            return
        if self._handler is None:
            return
        exchange = self._exchange(b"".join(self._body))
        persistent = self._persistent(exchange)
        slot = _Slot(exchange, persistent)
        self._queue.append(slot)
        if not persistent:
            self._closing = True
        d = maybeDeferred(self._handler, exchange)
        slot.deferred = d
        d.addCallbacks(self._answered, self._failed, callbackArgs=(slot,), errbackArgs=(slot,))
        if self._closing:
            raise _Stop()

    # -- requests and answers --------------------------------------------------

    def _exchange(self, body: bytes) -> Exchange:
        url = self._target
        path, _, query = url.partition(b"?")
        exchange = Exchange(
            self._method,
            path,
            query,
            self._requestHeaders,
            body,
            self.transport.getPeer(),
            self.transport.getHost(),
            ISSLTransport(self.transport, None) is not None,
        )
        exchange.clientproto = self._version
        neutraliseHost(exchange)
        return exchange

    def _persistent(self, exchange) -> bool:
        """twisted.web's rule (L{twisted.web.http.HTTPChannel.checkPersistence})."""
        if self._version != b"HTTP/1.1":
            return False
        connection = exchange.requestHeaders.getRawHeaders(b"connection")
        tokens = [t.lower() for t in connection[0].split(b" ")] if connection else []
        return b"close" not in tokens

    def _tooLarge(self) -> None:
        """413 before the body is read, with the site's answer (as L{rocketd.http.limits.BoundedRequest})."""
        exchange = self._exchange(b"")
        try:
            contentType, body = self.site.tooLargeBody(exchange)
        except Exception:
            self.log.failure("tooLargeBody failed; answering in plain text")
            contentType, body = plainTooLarge(exchange)
        headers = Headers()
        headers.setRawHeaders(b"Server", [SERVER])
        headers.setRawHeaders(b"Date", [_date()])
        headers.setRawHeaders(b"Content-Type", [contentType])
        headers.setRawHeaders(b"Content-Length", [b"%d" % (len(body),)])
        headers.setRawHeaders(b"Connection", [b"close"])
        exchange.code = 413
        exchange.sentLength = len(body)
        self._refuse(self._frame(self._version, 413, headers, body))
        self._log(exchange)

    def _answered(self, response: Optional[HTTPResponse], slot: _Slot) -> None:
        if response is None:
            return  # the client went away
        exchange = slot.exchange
        headers = Headers()
        if not slot.persistent and exchange.clientproto == b"HTTP/1.1":
            headers.setRawHeaders(b"Connection", [b"close"])
        headers.setRawHeaders(b"Server", [SERVER])
        headers.setRawHeaders(b"Date", [_date()])
        for name, value in response.headers:
            headers.addRawHeader(name, value)
        status, body = response.status, response.body
        length = headers.getRawHeaders(b"content-length")
        if (
            status not in (NOT_MODIFIED, NO_CONTENT)
            and not headers.hasHeader(b"content-type")
            and not (length and length[0] == b"0")
        ):
            headers.setRawHeaders(b"Content-Type", [b"text/html"])
        chunked = False
        if length is None and status not in NO_BODY_CODES:
            if exchange.clientproto == b"HTTP/1.1":
                chunked = True
            else:
                slot.persistent = False
        exchange.code = status
        exchange.sentLength = len(body)
        slot.data = self._frame(exchange.clientproto, status, headers, body, chunked)
        self._log(exchange)
        self._flush()

    def _failed(self, failure, slot: _Slot) -> None:
        """The last resort (as L{rocketd.http.guard.GuardedRequest.processingFailed})."""
        exchange = slot.exchange
        if exchange.channel is None:
            if not failure.check(CancelledError):
                self.log.failure("{method} {uri} failed after its client left", failure, method=exchange.method, uri=exchange.uri)
            return
        self.log.failure("{method} {uri} failed; answered 500", failure, method=exchange.method, uri=exchange.uri)
        try:
            contentType, body = self.site.internalError(exchange)
        except Exception:
            contentType, body = plainInternalError(exchange)
        self._answered(
            HTTPResponse(500, [(b"Content-Type", contentType), (b"Content-Length", b"%d" % (len(body),))], body), slot
        )

    @staticmethod
    def _frame(version, status, headers, body, chunked=False) -> bytes:
        lines = [b"%s %d %s\r\n" % (version, status, RESPONSES.get(status, b"Unknown Status"))]
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        if chunked:
            if body:
                lines.append(b"%x\r\n%s\r\n" % (len(body), body))
            lines.append(b"0\r\n\r\n")
        else:
            lines.append(body)
        return b"".join(lines)

    def _log(self, exchange) -> None:
        try:
            self.site.log(exchange)
        except Exception:
            self.log.failure("access log failed")

    def _flush(self) -> None:
        """Write the answers that are ready, in order; close after a last one."""
        transport = self.transport
        wrote = False
        while self._queue and self._queue[0].data is not None:
            slot = self._queue.pop(0)
            if slot.data:
                transport.write(slot.data)
                wrote = True
            if not slot.persistent:
                self._queue.clear()
                self._stopHead()
                self._closing = True
                transport.loseConnection()
                return
        if wrote:
            sendBuffered(transport)
        self._maybeHandOver()

    # -- the switch to twisted.web ---------------------------------------------

    def _writeHead(self, method: bytes, url: bytes) -> None:
        """Re-serialise a request head into the site's protocol."""
        self._chunked = False
        lines = [b"%s %s %s\r\n" % (method, url, self._version)]
        for name, value in self._headers:
            if name.lower() == b"transfer-encoding":
                self._chunked = True
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        self._toInner.append(b"".join(lines))

    def _maybeHandOver(self) -> None:
        if not self._handover:
            return
        if self._queue:
            # Earlier hot answers go first: hold the cold bytes meanwhile.
            self._pauseReading()
            return
        if self._inner is None:
            self._stopHead()
            self.setTimeout(None)
            self.transport.unregisterProducer()
            self._inner = self.site.buildProtocol(self.transport.getPeer())
            self._inner.makeConnection(self.transport)
            if self._mode == "raw":
                # Nothing more is parsed here: keep nothing of the parser's
                # (a stream or a WebSocket may stay open for hours).
                self._parser = self._url = self._headers = self._body = self._requestHeaders = None
            if self._readPaused:
                self._readPaused = False
                self.transport.resumeProducing()
        data, self._toInner = b"".join(self._toInner), []
        if data:
            self._inner.dataReceived(data)


class FrontDoorFactory(Factory):
    """
    The main listener's factory with the front door: builds L{FrontDoor}s
    over a site (see the module docstring), and answers what a connection
    cap asks of the site (L{evictWaitingHead}).
    """

    def __init__(self, site, route: Route):
        self.site = site
        self.route = route

    def buildProtocol(self, addr):
        protocol = FrontDoor(self.site, self.route)
        protocol.factory = self
        return protocol

    def evictWaitingHead(self) -> bool:
        return self.site.evictWaitingHead()

    def doStart(self):
        self.site.doStart()

    def doStop(self):
        self.site.doStop()
