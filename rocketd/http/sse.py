"""
Server-sent events: the framing, and a stream over one twisted.web request.

Both faces serve event streams with this module: RestMS stream pipes (with
C{Accept: text/event-stream}) and WebRocket backend workers. Events are
encoded once with L{encodeEvent} and the same bytes go to every
subscriber's L{SSEStream.send}.

Backpressure: twisted.web does not expose how many bytes wait in a
request's transport buffer, so an L{SSEStream} registers itself with the
request as a streaming producer (C{request.registerProducer(stream,
True)}). When the transport's buffer fills up, twisted calls
C{pauseProducing} and the stream's C{paused} flag goes up; when it drains,
C{resumeProducing} lowers it. L{SSEStream.send} always writes (twisted
buffers what the socket can't take yet); a caller that holds its own queue
(a pipe) checks C{paused} before sending and waits on
L{SSEStream.whenWritable}, so a slow reader holds messages in its pipe
(bounded by the pipe's depth policy) instead of in the write buffer.
A request that pulls from its producer at once (the test helper
C{DummyRequest} does) can't give backpressure: the stream unregisters from
it and C{paused} stays false.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from rocketd.http.directwrite import directWriter

#: The heartbeat: a comment line, which clients ignore.
COMMENT_PING = b": ping\n\n"
#: The comment written when a stream starts, so the headers go out at once.
COMMENT_OPEN = b": ok\n\n"

_Text = Union[bytes, str]


def _field(name: bytes, value: _Text) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if b"\n" in value or b"\r" in value or b"\0" in value:
        raise ValueError(f"an SSE {name.decode()} cannot contain a line break or NUL")
    return name + b": " + value + b"\n"


def encodeEvent(
    data: _Text,
    event: Optional[_Text] = None,
    id: Optional[_Text] = None,
    retry: Optional[int] = None,
) -> bytes:
    """
    Frame one server-sent event.

    @param data: the payload (text is encoded as UTF-8). Each of its lines
        (split at CRLF, CR or LF) becomes one C{data:} line, so the client
        sees the payload as it was.
    @param event: the event type (C{event:} line), or L{None}.
    @param id: the event id (C{id:} line), or L{None}.
    @param retry: the client's reconnection delay in milliseconds, or L{None}.
    @return: the event's bytes, ending with the blank line that dispatches it.
    @raise ValueError: C{event} or C{id} contains a line break (or NUL).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    parts = []
    if id is not None:
        parts.append(_field(b"id", id))
    if event is not None:
        parts.append(_field(b"event", event))
    if retry is not None:
        parts.append(b"retry: %d\n" % (retry,))
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    else:
        lines = (data,)
    for line in lines:
        parts.append(b"data: " + line + b"\n" if line else b"data:\n")
    parts.append(b"\n")
    return b"".join(parts)


def lastEventID(request) -> Optional[str]:
    """
    The id a reconnecting client last saw.

    @return: the request's C{Last-Event-ID} header as text, or L{None}.
    """
    value = request.getHeader(b"Last-Event-ID")
    if value is None:
        return None
    return value.decode("utf-8", "replace")


class Heartbeat:
    """
    The heartbeat of the event streams of one clock: one timer for every
    open stream, writing a C{: ping} comment to each every C{interval}
    seconds, so an idle stream costs no timer of its own. The timer runs
    only while a stream is open.

    There is no registry of heartbeats: the owner of the clock (the
    composition root, or a face built on its own) makes one and hands it
    to the streams that share it (see L{SSEStream}).

    @ivar clock: the L{IReactorTime} of the timer.
    @ivar interval: seconds between two comments.
    """

    __slots__ = ("clock", "interval", "_streams", "_loop")

    def __init__(self, clock, interval: float):
        self.clock = clock
        self.interval = interval
        self._streams: Dict["SSEStream", None] = {}
        self._loop = LoopingCall(self._beat)
        self._loop.clock = clock

    def add(self, stream: "SSEStream") -> None:
        """Beat for C{stream} (its first comment comes at most C{interval} seconds later)."""
        self._streams[stream] = None
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def remove(self, stream: "SSEStream") -> None:
        """Beat no more for C{stream}; the timer stops with the last stream."""
        if self._streams.pop(stream, _GONE) is not _GONE and not self._streams and self._loop.running:
            self._loop.stop()

    def __len__(self) -> int:
        """How many streams are open (for the metrics)."""
        return len(self._streams)

    def _beat(self) -> None:
        for stream in list(self._streams):
            stream._ping()


_GONE = object()


def _bodyWriter(request) -> Callable[[bytes], None]:
    """
    How to write body bytes of a response whose head has gone out: as a
    chunk straight to the connection's socket when it is a chunked
    response on a plain TCP connection (L{directWriter}: at once, when
    nothing waits before it), through C{request.write} otherwise.
    """
    transport = getattr(getattr(request, "channel", None), "transport", None)
    if transport is None or not getattr(request, "chunked", False):
        return request.write
    write = directWriter(transport)
    if write == transport.write:
        return request.write

    def chunk(data: bytes) -> None:
        if data:
            request.sentLength += len(data)
            write(b"%x\r\n%s\r\n" % (len(data), data))

    return chunk


@implementer(IPushProducer)
class SSEStream:
    """
    An event stream on one request.

    Usage, in a resource's render method::

        stream = SSEStream(request, heartbeat)
        stream.start()
        stream.finished.addCallback(lambda _: unsubscribe())
        ...
        stream.send(encodeEvent(data, event="x", id="1"))
        return NOT_DONE_YET

    The heartbeat is periodic: a C{: ping} comment every interval of the
    given L{Heartbeat}, whether or not events were sent in between
    (cheaper than resetting a timer per event; it costs at most one
    comment per interval). The L{Heartbeat}'s one timer serves every
    stream given it, so a stream's first heartbeat comes at most one
    interval after it starts. No heartbeat is written while the stream is
    paused.

    Events go out as chunks written straight to the connection (see
    L{_bodyWriter}); twisted.web still owns the response, its head, its
    producer and its end.

    @ivar request: the L{twisted.web.server.Request}.
    @ivar finished: a L{Deferred} that fires with L{None} once, when the
        client goes away or L{close} is called. It never fails.
    @ivar paused: whether the transport asked us to stop writing (see the
        module docstring).
    @ivar disconnected: whether the stream ended because the client went
        away (rather than by L{close}).
    """

    log = Logger()

    # An idle subscriber keeps its stream as long as it is connected.
    __slots__ = (
        "request", "finished", "paused", "disconnected", "_heartbeat", "_write",
        "_started", "_open", "_ended", "_registering", "_registered", "_writableWaiters",
    )

    def __init__(self, request, heartbeat: Optional[Heartbeat] = None):
        """
        @param request: the request to stream the response of.
        @param heartbeat: the L{Heartbeat} that pings this stream once it
            has started (shared with the other streams of its clock); L{None}
            for none.
        """
        self.request = request
        self.finished: Deferred = Deferred()
        self.paused = False
        self.disconnected = False
        self._heartbeat = heartbeat
        self._write = request.write
        self._started = False
        self._open = False
        self._ended = False
        self._registering = False
        self._registered = False
        self._writableWaiters: List[Deferred] = []

    @property
    def open(self) -> bool:
        """Whether L{send} still writes (started, and not finished)."""
        return self._open

    def start(self) -> None:
        """
        Send the status and headers, and the opening comment so they leave
        at once; start the heartbeat; watch for the client going away.
        """
        if self._started:
            raise RuntimeError("this SSE stream has already started")
        self._started = True
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Connection", b"keep-alive")
        request.setHeader(b"X-Accel-Buffering", b"no")
        self._open = True
        request.notifyFinish().addBoth(self._requestFinished)
        self._registering = True
        try:
            request.registerProducer(self, True)
            # resumeProducing clears _registering if the consumer pulled.
            self._registered = self._registering
        finally:
            self._registering = False
        if not self._open:
            return
        request.write(COMMENT_OPEN)
        # The head is out: the response headers are not needed any more.
        request.responseHeaders = Headers()
        self._write = _bodyWriter(request)
        if self._heartbeat is not None:
            self._heartbeat.add(self)

    def send(self, event: bytes) -> bool:
        """
        Write pre-encoded event bytes (see L{encodeEvent}).

        @return: C{True} if written, C{False} if the stream is not open
            (not started, closed, or the client is gone).
        """
        if not self._open:
            return False
        self._write(event)
        return True

    def whenWritable(self) -> Deferred:
        """
        @return: a L{Deferred} that fires with C{True} as soon as the stream
            is not paused (at once if it isn't), or with C{False} if the
            stream finishes first (or has finished).
        """
        if not self._open:
            return succeed(False)
        if not self.paused:
            return succeed(True)
        d = Deferred()
        self._writableWaiters.append(d)
        return d

    def close(self) -> None:
        """
        End the response cleanly. Does nothing if the stream already ended.
        L{finished} fires.
        """
        if not self._open:
            if not self._started:
                self._end(disconnected=False)
            return
        self._open = False
        self._stopHeartbeat()
        if self._registered:
            self._registered = False
            self.request.unregisterProducer()
        # Fires notifyFinish, hence _requestFinished and _end.
        self.request.finish()

    # IPushProducer, called by the transport through the request.

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self._registering:
            # A consumer that pulls while we register treats us as a pull
            # producer and would keep pulling: it can't give backpressure,
            # so stop being its producer.
            self._registering = False
            self.request.unregisterProducer()
            return
        self.paused = False
        waiters, self._writableWaiters = self._writableWaiters, []
        for d in waiters:
            d.callback(True)

    def stopProducing(self) -> None:
        # The transport is going away.
        self._registered = False
        self._end(disconnected=True)

    # internals

    def _ping(self) -> None:
        if self._open and not self.paused:
            self._write(COMMENT_PING)

    def _stopHeartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.remove(self)
            self._heartbeat = None

    def _requestFinished(self, result) -> None:
        self._end(disconnected=isinstance(result, Failure))

    def _end(self, disconnected: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self._open = False
        self._registered = False
        self.disconnected = disconnected
        self._stopHeartbeat()
        if disconnected:
            self.log.debug("SSE client went away: {uri}", uri=getattr(self.request, "uri", None))
        waiters, self._writableWaiters = self._writableWaiters, []
        for d in waiters:
            d.callback(False)
        self.finished.callback(None)

