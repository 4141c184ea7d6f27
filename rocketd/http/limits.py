"""
Bounded request bodies for every listener.

L{BoundedSite} is a L{twisted.web.server.Site} whose requests refuse a body
larger than C{maxBody} bytes with a 413, without ever holding more than
C{maxBody} bytes of it:

  - a C{Content-Length} over the limit is refused as soon as the headers
    are in (L{BoundedRequest.gotLength}), before any of the body is read;
  - a chunked body is counted as it arrives
    (L{BoundedRequest.handleContentChunk}) and refused with the chunk that
    crosses the limit, which is not stored.

A refused request is never dispatched to the resource. The 413 carries
C{Connection: close}, the rest of the body is discarded, and the
connection is closed once the answer is written (the client may still be
sending, so keeping the connection for another request is not an option).

Its connections are L{rocketd.http.connections.HeadDeadlineChannel}s: a
request head that takes longer than C{headTimeout} is answered with 408.
Answering before the body is in needs the request line, which twisted.web
keeps on its C{HTTPChannel} (C{_command}, C{_path}, C{_version}, private)
until the body is in, and the chunked body's decoder
(C{_transferDecoder}). L{CHANNEL_PRIVATES} says, once at import, whether
this Twisted has them (L{channelShowsRequestLine}); if not, a refused body
is discarded as it arrives and the 413 is answered once it is all in,
when twisted.web hands the request line over (C{requestReceived}).
"""

from __future__ import annotations

from io import BytesIO
from typing import Callable, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.logger import Logger
from twisted.web import http
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.server import Request, Site, version

from rocketd.http.connections import EVICT_AFTER, WaitingHeads, headDeadlineProtocol
from rocketd.http.directwrite import sendBuffered

# Chunked bodies are kept in memory when the limit is at most this.
_IN_MEMORY = 4 * 1024 * 1024

#: What a site's C{tooLargeBody} returns: (Content-Type, body).
TooLargeAnswer = Tuple[bytes, bytes]


def plainTooLarge(request) -> TooLargeAnswer:
    """The default 413 answer: one plain-text sentence."""
    return (b"text/plain; charset=utf-8", b"The request body is larger than the server accepts.\n")


def _discard(*args) -> None:
    """Swallow whatever the channel still hands over."""


class _ProbeTransport:
    """Just enough of a transport for L{channelShowsRequestLine}'s probe."""

    disconnecting = False

    def getPeer(self):
        return IPv4Address("TCP", "127.0.0.1", 0)

    getHost = getPeer

    def write(self, data):
        pass

    def writeSequence(self, data):
        pass

    def loseConnection(self):
        pass

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass


def channelShowsRequestLine(channelClass=HTTPChannel) -> bool:
    """
    Check that when a request's C{gotLength} is called, its channel holds
    the request line (C{_command}, C{_path}, C{_version}) and a chunked
    body's decoder (C{_transferDecoder}, with C{dataCallback} and
    C{finishCallback}), as L{BoundedRequest} expects.

    @param channelClass: the channel class to check (Twisted's by default).
    @return: whether it does.
    """
    seen = []

    class Probe(http.Request):
        def gotLength(self, length):
            channel = self.channel
            decoder = channel._transferDecoder
            seen.append(
                (channel._command, channel._path, channel._version, decoder.dataCallback, decoder.finishCallback)
            )
            self.content = BytesIO()

    try:
        channel = channelClass()
        channel.requestFactory = Probe
        channel.transport = _ProbeTransport()
        channel.dataReceived(b"POST /probe?q HTTP/1.1\r\nHost: probe\r\nTransfer-Encoding: chunked\r\n\r\n")
        channel.connectionLost(None)
    except Exception:
        return False
    return len(seen) == 1 and seen[0][:3] == (b"POST", b"/probe?q", b"HTTP/1.1") and all(map(callable, seen[0][3:]))


#: Whether this twisted.web shows a request's line before its body is in
#: (see L{channelShowsRequestLine}); checked once, at import.
CHANNEL_PRIVATES = channelShowsRequestLine()


class BoundedRequest(Request):
    """
    A request that refuses a body over its site's C{maxBody} (see the
    module docstring). It reads the limit and the 413 body from the
    L{BoundedSite} it belongs to, so it only works on one.

    @ivar refused: whether this request was answered with 413.
    """

    log = Logger()
    refused = False
    _received = 0

    def gotLength(self, length):
        """
        The channel knows the body's length (L{None}: chunked or unknown).
        Refuse at once when it is over the limit; otherwise get a content
        file for at most the limit (in memory for a chunked body when the
        limit is at most 4 MiB; twisted's choice otherwise).
        """
        maxBody = self.channel.site.maxBody
        if length is not None and length > maxBody:
            self.content = BytesIO()
            self._refuse()
            return
        if length is None and maxBody <= _IN_MEMORY:
            # Chunked: at most maxBody bytes will be kept.
            self.content = BytesIO()
        else:
            Request.gotLength(self, maxBody if length is None else length)

    def handleContentChunk(self, data):
        """Store a piece of the body, unless it takes the body over the limit."""
        if self.refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.maxBody:
            self._refuse()
            return
        self.content.write(data)

    def finish(self):
        """
        End the response, and send it now rather than at the reactor's next
        turn (L{sendBuffered}): the client has its answer before the turn's
        fan-out writes go out, and the socket costs no writable event.
        """
        channel = self.channel
        transport = channel.transport if channel is not None else None
        Request.finish(self)
        if transport is not None:
            sendBuffered(transport)

    def requestReceived(self, command, path, version):
        """The whole request is in: dispatch it, unless it was refused."""
        if self.refused:
            if not CHANNEL_PRIVATES and not self.finished:
                # The discarded body is all in: answer now.
                self.method, self.uri, self.clientproto = command, path, version
                self._answerTooLarge()
            return
        Request.requestReceived(self, command, path, version)

    def _refuse(self):
        """
        Answer 413 now, before the body is in, and make the channel drop the
        rest of this connection's input. (Without L{CHANNEL_PRIVATES}, only
        mark the request refused: its body is dropped as it arrives, and
        L{requestReceived} answers.)
        """
        self.refused = True
        # No "100 Continue" after the final answer.
        self.requestHeaders.removeHeader(b"Expect")
        if not CHANNEL_PRIVATES:
            return
        channel = self.channel
        # requestReceived has not run yet; the request line is on the channel.
        self.method = channel._command
        self.uri = channel._path
        self.clientproto = channel._version
        # The body decoder may still be looping over buffered input: make it
        # hand the rest (and the end of the body) to nobody.
        decoder = channel._transferDecoder
        if decoder is not None:
            decoder.dataCallback = _discard
            decoder.finishCallback = _discard
        self._answerTooLarge()

    def _answerTooLarge(self):
        """Answer 413 and ignore whatever else arrives on this connection."""
        channel = self.channel
        self.path = self.uri.split(b"?", 1)[0]
        channel.dataReceived = _discard
        channel.persistent = False

        try:
            contentType, body = channel.site.tooLargeBody(self)
        except Exception:
            self.log.failure("tooLargeBody failed; answering in plain text")
            contentType, body = plainTooLarge(self)
        self.setResponseCode(413)
        self.setHeader(b"Server", version)
        self.setHeader(b"Date", datetimeToString())
        self.setHeader(b"Content-Type", contentType)
        self.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.setHeader(b"Connection", b"close")
        self.write(body)
        # Finishing tells the channel the request is done; as the channel is
        # not persistent, it closes the connection after the answer.
        self.finish()


class BoundedSite(Site):
    """
    A L{Site} that refuses request bodies over C{maxBody} bytes with 413,
    and request heads slower than C{headTimeout} with 408.

    @ivar maxBody: the largest body accepted, in bytes.
    @ivar headTimeout: the longest a request head may take, in seconds
        (None: no limit).
    @ivar headTimeouts: how many heads took longer (and got a 408).
    @ivar waitingHeads: the connections waiting for a request head, for
        L{evictWaitingHead}.
    @ivar tooLargeBody: C{callable(request) -> (contentType, body)}, both
        bytes, giving the 413 answer (C{request.path} and the request
        headers are available).
    """

    requestFactory = BoundedRequest
    protocol = headDeadlineProtocol
    headTimeouts = 0

    def __init__(
        self,
        resource,
        maxBody: int,
        tooLargeBody: Callable[[Request], TooLargeAnswer] = plainTooLarge,
        *,
        headTimeout: Optional[float] = None,
        parsePOSTFormSubmission: bool = False,
        **kwargs,
    ):
        """
        @param resource: the root resource.
        @param maxBody: the largest body accepted, in bytes (>= 0).
        @param tooLargeBody: builds the 413 answer.
        @param headTimeout: the longest a request head may take, in
            seconds, on the site's C{reactor} (None: no limit).
        @param parsePOSTFormSubmission: off by default: a form-encoded body
            is data to the faces (a content to stage), not request
            arguments.
        @param kwargs: passed to L{Site} (C{requestFactory}, which should be
            a L{BoundedRequest}; C{reactor}, C{timeout}, C{logPath}...).
        """
        if maxBody < 0:
            raise ValueError("maxBody must not be negative")
        Site.__init__(self, resource, parsePOSTFormSubmission=parsePOSTFormSubmission, **kwargs)
        self.maxBody = maxBody
        self.tooLargeBody = tooLargeBody
        self.headTimeout = headTimeout
        self.waitingHeads = WaitingHeads(self.reactor)

    def evictWaitingHead(self) -> bool:
        """
        Make room for a new connection (the listener is at its cap): close
        the one that has waited longest for its request head, if that is
        at least L{EVICT_AFTER} seconds.

        @return: whether one was closed.
        """
        return self.waitingHeads.evictOldest(EVICT_AFTER)
