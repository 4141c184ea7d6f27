"""
Stream pipes served as one long response: C{multipart/mixed} (a MIME part
per message) or C{text/event-stream} (an SSE event per message).

Both take the pipe's messages with a L{rocketd.http.pipestream.PipeStream}
(L{rocketd.interfaces.IPipe.consume}): a message is removed from the pipe
once it has been written. The transport's flow control reaches the pipe:
while the transport asks to pause, the consumer refuses messages (they
stay held, in order) and the pipe resumes delivery when the transport
drains. This module owns only the RestMS framing of the messages.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from rocketd.http.coalesce import Coalescer
from rocketd.http.pipestream import PipeStream
from rocketd.http.sse import Heartbeat, SSEStream, encodeEvent
from rocketd.restms.codec import MEDIA_TYPES
from rocketd.restms.documents import renderHeldMessage, renderStreamedMessage


class _Streaming(Resource):
    """
    What a stream's handler answers once the stream runs: the response is
    the stream's to write and to finish (rendering it leaves the request
    open), and the handler's own Deferreds are done with, so that an idle
    stream holds no chain of them.
    """

    isLeaf = True

    def render(self, request):
        return NOT_DONE_YET


#: The answer of every running stream (see L{_Streaming}).
STREAMING = _Streaming()


def _streaming(_) -> Resource:
    return STREAMING


def streamMultipart(request, pipe, kind: str, base: bytes) -> Deferred:
    """
    Serve a stream pipe as C{multipart/mixed}: each message is a part with
    C{Content-Type} (the document's media type) and C{Content-Location}
    (the message's URI), and its document as the part's body. Deleting the
    pipe closes the body and ends the response.

    @param kind: the representation of the parts, C{"xml"} or C{"json"}.
    @param base: the request's base URI (bytes).
    @return: a Deferred that fires with L{STREAMING} once the stream runs,
        or fails with L{rocketd.errors.Conflict}, before anything is
        written, if the pipe already has a consumer.
    """
    boundary = secrets.token_hex(16).encode("ascii")
    head = b"--%s\r\nContent-Type: %s\r\nContent-Location: %s/restms/resource/" % (
        boundary,
        MEDIA_TYPES[kind].encode("ascii"),
        base,
    )

    def frame(held) -> bytes:
        return b"".join((head, held.hash.encode("ascii"), b"\r\n\r\n", renderHeldMessage(held, kind, base), b"\r\n"))

    def begin() -> None:
        request.setResponseCode(200)
        request.setHeader(b"content-type", b'multipart/mixed; boundary="%s"' % boundary)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        # Send the head now: the client learns the stream is open.
        request.write(b"")

    def end() -> None:
        # The pipe was deleted: close the multipart body.
        if request.producer is not None:
            request.unregisterProducer()
        request.write(b"--%s--\r\n" % boundary)
        request.finish()

    stream = PipeStream(pipe, frame, request.write, begin, end)
    return stream.start(request.notifyFinish(), producerFor=request).addCallback(_streaming)


def _sharedEvent(message, base: bytes) -> bytes:
    """
    The C{event:} and C{data:} lines of a streamed message's SSE event and
    the blank line that ends it: everything but the pipe's own C{id:} line.
    """
    address = message.address
    # An address with a line break can't be an event type: such a message
    # goes out as the default "message" event.
    event = address if address and "\n" not in address and "\r" not in address and "\0" not in address else None
    return encodeEvent(renderStreamedMessage(message, "json", base), event=event)


class _EventFrames:
    """An event stream's framing and writing (slots: an idle subscriber keeps it)."""

    __slots__ = ("_stream", "_base", "_key", "_coalescer", "send")

    def __init__(self, stream, base: bytes, coalescer: Coalescer):
        self._stream = stream
        self._base = base
        self._key = ("restms-sse", base)
        self._coalescer = coalescer
        # One call per delivery from the pipe's consumer to the coalescer.
        self.send = functools.partial(coalescer.send, stream)

    def frame(self, held) -> bytes:
        # The event and data lines are the same bytes for every pipe: only
        # the id line is the pipe's own.
        message = held.message
        contents = held.contents
        if contents is not message.contents and len(contents) != len(message.contents):
            # Some contents were deleted from it while it waited in the
            # pipe: its own event, not the shared one.
            trimmed = dataclasses.replace(message, contents=contents, cache={})
            return b"id: %d\n%s" % (held.sequence, _sharedEvent(trimmed, self._base))
        shared = message.cache.get(self._key)
        if shared is None:
            shared = message.cache[self._key] = _sharedEvent(message, self._base)
        return b"id: %d\n%s" % (held.sequence, shared)

    def end(self) -> None:
        self._coalescer.flushNow(self._stream)
        self._stream.close()


def streamEvents(request, pipe, base: bytes, heartbeat: Heartbeat, coalescer: Coalescer) -> Deferred:
    """
    Serve a stream pipe as server-sent events: C{id:} the message's
    sequence in the pipe, C{event:} its address, C{data:} its JSON document
    on one line, without the message's href and content hrefs (the message
    is deleted once written), so the same event and data bytes, encoded
    once per message, go to every pipe; the frames of one reactor turn go
    out in one write at its end (C{coalescer}); a comment every interval of
    C{heartbeat}. Deleting the pipe ends the response.

    @param base: the request's base URI (bytes).
    @param heartbeat: the L{Heartbeat} of the face's clock.
    @param coalescer: the L{Coalescer} of the face's clock.
    @return: see L{streamMultipart}.
    """
    stream = SSEStream(request, heartbeat)
    events = _EventFrames(stream, base, coalescer)
    consumer = PipeStream(pipe, events.frame, events.send, stream.start, events.end, gate=stream)
    started = consumer.start(stream.finished).addCallback(_streaming)

    def failed(failure):
        # Nothing was written: the handler answers with the error.
        stream.close()
        return failure

    return started.addErrback(failed)
