"""
Stream pipes served as one long response: C{multipart/mixed} (a MIME part
per message) or C{text/event-stream} (an SSE event per message).

Both take the pipe's messages with L{rocketd.interfaces.IPipe.consume}: a
message is removed from the pipe once it has been written. The transport's
flow control reaches the pipe: while the transport asks to pause, the
consumer refuses messages (they stay held, in order) and the pipe resumes
delivery when the transport drains.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import weakref
from typing import Dict, List

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from rocketd.http.sse import SSEStream, encodeEvent
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


@implementer(IPushProducer)
class _PipeStream:
    """
    A pipe served as one long response: the pipe's consumer, handing each
    held and arriving message to C{send} as C{frame(held)} once the head
    has gone out (C{begin}), and calling C{end} (which finishes the
    response) when the pipe is deleted.

    While the response can't take more, the consumer refuses messages
    (they stay held in the pipe, in order) until it can: either as the
    request's push producer itself, or by watching a C{gate} that is one
    (an L{SSEStream}, with C{paused} and C{whenWritable()}). One object
    with slots, as an idle subscriber keeps it for as long as it is
    connected.
    """

    __slots__ = (
        "_pipe", "_frame", "_begin", "_send", "_end", "_gate", "_handle",
        "_pending", "_paused", "_refused", "_stopped", "_watching", "_over",
    )

    def __init__(self, pipe, frame, begin, send, end, gate=None):
        self._pipe = pipe
        self._frame = frame
        self._begin = begin
        self._send = send
        self._end = end
        self._gate = gate
        self._handle = None
        # Frames handed before the head went out (None after).
        self._pending = []
        self._paused = False
        self._refused = False
        self._stopped = False
        self._watching = False
        self._over = False

    def start(self, gone: Deferred, producerFor=None) -> Deferred:
        """
        Attach to the pipe; once attached, send the head and what waits.

        @param gone: fires when the response is over (the client went
            away): the stream detaches; what was not written stays held.
        @param producerFor: a request to register with as its push
            producer (when there is no gate).
        @return: a Deferred that fires with L{STREAMING} once the stream
            runs, or fails with L{rocketd.errors.Conflict}, before
            anything is written, if the pipe already has a consumer.
        """
        gone.addBoth(self._clientGone)
        return self._pipe.consume(self._deliver).addCallback(self._attached, producerFor)

    def _attached(self, handle, producerFor):
        self._handle = handle
        handle.ended.addCallback(self._ended)
        if self._stopped:
            # The client went away while the pipe was attaching.
            handle.stop()
            return STREAMING
        self._begin()
        pending, self._pending = self._pending, None
        for data in pending:
            self._send(data)
        if producerFor is not None:
            producerFor.registerProducer(self, True)
        self._resumePipe()
        return STREAMING

    def _deliver(self, held) -> bool:
        if self._paused or self._stopped:
            self._refused = True
            return False
        gate = self._gate
        if gate is not None and gate.paused:
            self._refused = True
            if not self._watching:
                self._watching = True
                gate.whenWritable().addCallback(self._gateOpened)
            return False
        data = self._frame(held)
        if self._pending is None:
            self._send(data)
        else:
            self._pending.append(data)
        return True

    def _ended(self, deleted: bool) -> None:
        if deleted and not self._over:
            self._over = True
            self._end()

    def _clientGone(self, _) -> None:
        self._over = True
        self.stop()

    def _gateOpened(self, writable: bool) -> None:
        self._watching = False
        if writable:
            self._resumePipe()
        else:
            self.stop()

    def _resumePipe(self) -> None:
        if self._refused and not self._paused and not self._stopped and self._handle is not None:
            self._refused = False
            self._handle.resume()

    def stop(self) -> None:
        """Detach from the pipe; messages not yet written stay held."""
        if not self._stopped:
            self._stopped = True
            if self._handle is not None:
                self._handle.stop()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._resumePipe()

    def stopProducing(self) -> None:
        self.stop()


def streamMultipart(request, pipe, kind: str, base: bytes) -> Deferred:
    """
    Serve a stream pipe as C{multipart/mixed}: each message is a part with
    C{Content-Type} (the document's media type) and C{Content-Location}
    (the message's URI), and its document as the part's body. Deleting the
    pipe closes the body and ends the response.

    @param kind: the representation of the parts, C{"xml"} or C{"json"}.
    @param base: the request's base URI (bytes).
    @return: see L{_PipeStream.start}.
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

    return _PipeStream(pipe, frame, begin, request.write, end).start(request.notifyFinish(), producerFor=request)


class _Coalescer:
    """
    Joins the frames each event stream is given during one reactor turn
    into one write, made at the end of the turn (a single C{callLater(0)}
    for all the streams of a clock): a burst of publishes costs each
    stream one trip through the HTTP and transport write path rather than
    one per message.
    """

    def __init__(self, clock):
        self._clock = clock
        self._pending: Dict[object, List[bytes]] = {}
        self._call = None

    def send(self, stream, data: bytes) -> None:
        """Queue C{data} for C{stream}; it is written at the end of this turn."""
        frames = self._pending.get(stream)
        if frames is None:
            self._pending[stream] = [data]
            if self._call is None:
                self._call = self._clock.callLater(0, self.flush)
        else:
            frames.append(data)

    def flushStream(self, stream) -> None:
        """Write what waits for C{stream} now (before it closes)."""
        frames = self._pending.pop(stream, None)
        if frames:
            stream.send(frames[0] if len(frames) == 1 else b"".join(frames))

    def flush(self) -> None:
        """Write what waits for every stream."""
        self._call = None
        pending, self._pending = self._pending, {}
        for stream, frames in pending.items():
            stream.send(frames[0] if len(frames) == 1 else b"".join(frames))


_coalescers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _coalescerFor(clock) -> _Coalescer:
    coalescer = _coalescers.get(clock)
    if coalescer is None:
        coalescer = _coalescers[clock] = _Coalescer(clock)
    return coalescer


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

    def __init__(self, stream, base: bytes, coalescer):
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
        self._coalescer.flushStream(self._stream)
        self._stream.close()


def streamEvents(request, pipe, base: bytes, clock, heartbeat: float) -> Deferred:
    """
    Serve a stream pipe as server-sent events: C{id:} the message's
    sequence in the pipe, C{event:} its address, C{data:} its JSON document
    on one line, without the message's href and content hrefs (the message
    is deleted once written), so the same event and data bytes, encoded
    once per message, go to every pipe; the frames of one reactor turn go
    out in one write at its end; a comment heartbeat every C{heartbeat}
    seconds. Deleting the pipe ends the response.

    @param base: the request's base URI (bytes).
    @return: see L{_PipeStream.start}.
    """
    stream = SSEStream(request, clock, heartbeat)
    events = _EventFrames(stream, base, _coalescerFor(clock))
    started = _PipeStream(pipe, events.frame, stream.start, events.send, events.end, gate=stream).start(stream.finished)

    def failed(failure):
        # Nothing was written: the handler answers with the error.
        stream.close()
        return failure

    return started.addErrback(failed)
