"""
A connection's bounded send queue.

Frames are written to the transport while it takes them. The outbox is
the transport's streaming producer: when the transport's own buffer fills
up (a client that reads slowly), the transport pauses it, and frames wait
in the outbox, counted in bytes, until the transport resumes it. A frame
that would take the waiting bytes over the limit I{overflows} the outbox:
it drops everything waiting, refuses every later frame and calls its
C{overflowed} callback (the connection is then closed with code 1008).
So a slow client costs at most the transport's buffer plus the limit, and
never slows the others: a publish hands each subscriber its frame and goes
on.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class Outbox:
    """
    @param write: writes bytes to the transport.
    @param limit: the most bytes that may wait while the transport is paused.
    @param overflowed: called once, when a frame does not fit.

    @ivar paused: whether the transport asked to stop.
    @ivar waiting: how many bytes wait.
    @ivar sent: how many frames were written.
    @ivar closed: whether it refuses frames (overflowed or stopped).
    """

    def __init__(self, write: Callable[[bytes], object], limit: int, overflowed: Callable[[], object]):
        self._write = write
        self._limit = limit
        self._overflowed = overflowed
        self._queue = deque()
        self.waiting = 0
        self.sent = 0
        self.paused = False
        self.closed = False

    def send(self, frame: bytes) -> bool:
        """
        Write a frame now, or queue it while the transport is paused.

        @return: False if the frame was refused (closed, or it overflowed).
        """
        if self.closed:
            return False
        if not self.paused and not self._queue:
            self.sent += 1
            self._write(frame)
            return True
        if self.waiting + len(frame) > self._limit:
            self.close()
            self._overflowed()
            return False
        self._queue.append(frame)
        self.waiting += len(frame)
        return True

    def close(self) -> None:
        """Drop what waits and refuse every later frame."""
        self.closed = True
        self._queue.clear()
        self.waiting = 0

    # -- IPushProducer ------------------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        queue = self._queue
        # Writing may pause the outbox again (the transport's buffer fills).
        while queue and not self.paused and not self.closed:
            frame = queue.popleft()
            self.waiting -= len(frame)
            self.sent += 1
            self._write(frame)

    def stopProducing(self) -> None:
        self.close()
