"""
A pipe's consumer that writes to a flow-controlled response.

Both faces serve a stream pipe as one long response (RestMS stream pipes as
C{multipart/mixed} or server-sent events, WebRocket workers as server-sent
events). The pipe pushes its messages to a consumer
(C{IPipe.consume(consumer)}: see L{rocketd.interfaces}); a consumer that
answers C{False} leaves the message held at the head of the pipe, and the
pipe hands it again after the consumption handle's C{resume()}. A
L{PipeStream} is that consumer: it refuses messages while the response
can't take more, waits until it can, and resumes the pipe, so that a slow
reader holds messages in its pipe (bounded by the pipe's depth policy)
instead of in the write buffer.

This module knows the pipe only by that contract (C{consume}, and the
handle's C{resume}, C{stop} and C{ended}); it imports no engine.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class PipeStream:
    """
    A pipe served as one long response: the pipe's consumer, handing each
    held and arriving message to C{send} as C{frame(held)} once the head
    has gone out (C{begin}), and calling C{end} (which finishes the
    response) when the pipe is deleted.

    While the response can't take more, the consumer refuses messages
    (they stay held in the pipe, in order) until it can: either as the
    request's push producer itself (L{start}'s C{producerFor}), or by
    watching a C{gate} that is one (an L{rocketd.http.sse.SSEStream}, or
    anything with C{paused} and C{whenWritable() -> Deferred[bool]}). A
    C{send} that answers C{False} (the response is not open any more)
    refuses the message too. One object with slots, as an idle subscriber
    keeps it for as long as it is connected.

    @ivar written: how many messages went to C{send}.
    """

    __slots__ = (
        "_pipe", "_frame", "_begin", "_send", "_end", "_gate", "_handle",
        "_pending", "_paused", "_refused", "_stopped", "_watching", "_over", "written",
    )

    def __init__(
        self,
        pipe,
        frame: Callable[[object], bytes],
        send: Callable[[bytes], Optional[bool]],
        begin: Optional[Callable[[], None]] = None,
        end: Optional[Callable[[], None]] = None,
        gate=None,
    ):
        """
        @param pipe: the stream pipe (an C{IPipe}).
        @param frame: makes the bytes of a held message.
        @param send: writes them; C{False} means not written.
        @param begin: sends the response's head, once the pipe is ours.
        @param end: finishes the response when the pipe is deleted.
        @param gate: the flow control to watch, if this stream is not the
            request's producer.
        """
        self._pipe = pipe
        self._frame = frame
        self._begin = begin
        self._send = send
        self._end = end
        self._gate = gate
        self._handle = None
        # Frames handed before the head went out (None after).
        self._pending: Optional[List[bytes]] = []
        self._paused = False
        self._refused = False
        self._stopped = False
        self._watching = False
        self._over = False
        self.written = 0

    def start(self, gone: Optional[Deferred] = None, producerFor=None) -> Deferred:
        """
        Attach to the pipe; once attached, send the head and what waits.

        @param gone: fires when the response is over (the client went
            away): the stream detaches; what was not written stays held.
        @param producerFor: a request to register with as its push
            producer (when there is no gate).
        @return: a Deferred that fires with this stream once it runs (or
            once it is stopped, if it was stopped while attaching), or fails
            as C{IPipe.consume} does (L{rocketd.errors.Conflict}: the pipe
            already has a consumer) before anything is written.
        """
        if gone is not None:
            gone.addBoth(self._clientGone)
        return self._pipe.consume(self._deliver).addCallback(self._attached, producerFor)

    def _attached(self, handle, producerFor):
        self._handle = handle
        handle.ended.addCallback(self._ended)
        if self._stopped:
            # The client went away while the pipe was attaching.
            handle.stop()
            return self
        if self._begin is not None:
            self._begin()
        pending, self._pending = self._pending, None
        for data in pending:
            self._send(data)
        if producerFor is not None:
            producerFor.registerProducer(self, True)
        self._resumePipe()
        return self

    def _deliver(self, held) -> bool:
        # The pipe's consumer: once per message (written out in full).
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
            if self._send(data) is False:
                self._refused = True
                return False
        else:
            self._pending.append(data)
        self.written += 1
        return True

    def _ended(self, deleted: bool) -> None:
        if deleted and not self._over:
            self._over = True
            if self._end is not None:
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

    # IPushProducer, when registered with the request (see start).

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._resumePipe()

    def stopProducing(self) -> None:
        self.stop()
