"""
Warning lines about what a limit dropped, at most one a minute per
resource.

A pipe past its depth, a feed's backlog, a WebSocket client whose send
queue is full: each drop is counted where it happens, and the count must
reach the log without one line per drop. L{DropWarnings} writes the first
drop of a resource at once, then at most one line per interval with the
count since the previous line; a resource that stops dropping costs
nothing after its interval (no timer, no entry).
"""

from __future__ import annotations

from typing import Dict, Hashable

from twisted.logger import Logger

#: The shortest time (seconds) between two warning lines about one resource.
INTERVAL = 60.0


class _Pending:
    __slots__ = ("since", "count", "fields", "call")

    def __init__(self, since, fields, call):
        self.since = since
        self.count = 0
        self.fields = fields
        self.call = call


class DropWarnings:
    """
    Rate-limited warnings about drops, per resource.

    Every line has the fields C{count} (drops since the previous line about
    that resource; for a first line, the drops that started it) and
    C{seconds} (the time since the previous line, 0 for a first line),
    plus the fields the caller gives (the latest ones, for a line that
    sums several drops).

    @param log: the L{Logger} to warn with.
    @param clock: the L{IReactorTime} that times the interval.
    @param format: the line's format string (C{{count}}, C{{seconds}} and
        the caller's fields).
    @param interval: the shortest time between two lines about one resource.
    """

    def __init__(self, log: Logger, clock, format: str, interval: float = INTERVAL):
        self._log = log
        self._clock = clock
        self._format = format
        self._interval = interval
        self._pending: Dict[Hashable, _Pending] = {}

    def count(self, key: Hashable, n: int = 1, **fields) -> None:
        """
        Count C{n} drops of the resource C{key}: warn now if no line about
        it was written within the interval, else with the next line.
        """
        pending = self._pending.get(key)
        if pending is None:
            self._write(0.0, n, fields)
            call = self._clock.callLater(self._interval, self._due, key)
            self._pending[key] = _Pending(self._clock.seconds(), fields, call)
            return
        pending.count += n
        pending.fields = fields

    def _due(self, key) -> None:
        pending = self._pending[key]
        if not pending.count:
            del self._pending[key]
            return
        now = self._clock.seconds()
        self._write(now - pending.since, pending.count, pending.fields)
        pending.since = now
        pending.count = 0
        pending.call = self._clock.callLater(self._interval, self._due, key)

    def _write(self, seconds: float, count: int, fields) -> None:
        self._log.warn(self._format, count=count, seconds=seconds, **fields)

    def stop(self) -> None:
        """Write what is counted and not yet written; cancel the timers."""
        pending, self._pending = self._pending, {}
        now = self._clock.seconds()
        for entry in pending.values():
            if entry.call.active():
                entry.call.cancel()
            if entry.count:
                self._write(now - entry.since, entry.count, entry.fields)

    @property
    def watched(self) -> int:
        """How many resources dropped within their last interval (each holds one timer)."""
        return len(self._pending)
