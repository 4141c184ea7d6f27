"""
End-of-turn coalescing: what a reactor turn gives a stream goes out in one
write at the end of the turn.

A burst of publishes handled in one turn would otherwise cost each
subscriber one trip through the HTTP (or WebSocket) and transport write
path per message. A L{Coalescer} collects them and writes once per
subscriber, from a single C{callLater(0)} for everything that is due on
its clock.

There is no registry of coalescers: the owner of a clock (the composition
root, or a face built on its own) makes one and hands it to whatever
streams on that clock, so that they share one flush per turn.
"""

from __future__ import annotations

from typing import Callable, Dict, List

_NOT_DUE = object()


class Coalescer:
    """
    The end-of-turn writes of every stream of one clock.

    Two kinds of targets:

     - a I{byte stream} (anything with C{send(bytes)}) is given frames
       with L{send}; the coalescer keeps them, and at the end of the turn
       calls C{stream.send} once with their join;
     - a target that keeps its frames itself (a channel's fan-out, which
       writes a different join to some of its subscribers) is marked
       with L{due} when it gets its first frame of the turn; at the end of
       the turn the coalescer calls the flush it was given.

    @param clock: an L{IReactorTime}.
    """

    __slots__ = ("_clock", "_frames", "_due", "_call")

    def __init__(self, clock):
        self._clock = clock
        self._frames: Dict[object, List[bytes]] = {}
        self._due: Dict[object, Callable[[object], None]] = {}
        self._call = None

    def send(self, stream, data: bytes) -> None:
        """Queue C{data} for C{stream}; it is written at the end of this turn."""
        frames = self._frames.get(stream)
        if frames is None:
            self._frames[stream] = [data]
            if self._call is None:
                self._call = self._clock.callLater(0, self.flush)
        else:
            frames.append(data)

    def due(self, target, flush: Callable[[object], None]) -> None:
        """
        Call C{flush(target)} at the end of this turn (once, however many
        times C{target} is marked during the turn).
        """
        if target not in self._due:
            self._due[target] = flush
            if self._call is None:
                self._call = self._clock.callLater(0, self.flush)

    def flushNow(self, target) -> None:
        """Write what waits for C{target} now (before it closes, say), and only it."""
        frames = self._frames.pop(target, None)
        if frames:
            target.send(frames[0] if len(frames) == 1 else b"".join(frames))
        flush = self._due.pop(target, _NOT_DUE)
        if flush is not _NOT_DUE:
            flush(target)

    def flush(self) -> None:
        """Write what waits for every target (the end of the turn)."""
        self._call = None
        pending, self._frames = self._frames, {}
        for stream, frames in pending.items():
            stream.send(frames[0] if len(frames) == 1 else b"".join(frames))
        if self._due:
            due, self._due = self._due, {}
            for target, flush in due.items():
                flush(target)
