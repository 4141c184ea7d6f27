"""
The delivery state of a rotator or service feed: its joins in round-robin
order and the backlog of messages that found no ready matching join.

Invariant kept by the feed: a message in the backlog has no ready matching
join. So a new message never waits behind the backlog when some join can
take it, and the backlog is only worth scanning for a join that has just
appeared or just become ready (L{Rotation.drainFor}).

A rotation calls into joins and pipes only through the two protocols
below (L{Taker}, L{Receiver}), and into its feed only through the C{onDrop}
callable it is given.
"""

from collections import deque
from typing import Callable, Optional, Protocol


class Receiver(Protocol):
    """A pipe as a rotation sees it."""

    def ready(self) -> bool:
        """
        Whether the pipe may be handed a message now (an ondemand pipe
        takes one only when someone waits for it and it holds none).
        """

    def arrive(self, message, now: float) -> None:
        """Hold a message handed by the rotation (C{now}: the time it arrives)."""


class Taker(Protocol):
    """A join as a rotation sees it."""

    #: The join's pipe.
    pipe: Receiver

    def takes(self, message) -> bool:
        """Whether the join's address and predicate take the message."""


class Rotation:
    """
    @ivar joins: the joins, in creation order.
    @ivar backlog: a deque of C{(message, time kept)}, oldest first.
    """

    def __init__(self, clock, limit: int, age: Optional[float], onDrop: Callable[[int], None]):
        """
        @param clock: an L{IReactorTime}, for the backlog's age limit.
        @param limit: how many messages the backlog keeps; the oldest is
            dropped beyond it.
        @param age: how many seconds a message may wait, or None.
        @param onDrop: called with the number of messages dropped.
        """
        self._clock = clock
        self.limit = limit
        self.age = age
        self._onDrop = onDrop
        self.joins = []
        self._cursor = 0
        self.backlog = deque()
        self._timer = None

    def add(self, join: Taker):
        self.joins.append(join)

    def remove(self, join: Taker):
        try:
            i = self.joins.index(join)
        except ValueError:
            return
        del self.joins[i]
        if i < self._cursor:
            self._cursor -= 1

    def pick(self, message) -> Optional[Taker]:
        """
        @return: the next join, round-robin from the last one used, whose
            pipe is ready and which takes the message; or None.
        """
        joins = self.joins
        n = len(joins)
        if not n:
            return None
        start = self._cursor
        if start >= n:
            start = 0
        for k in range(n):
            i = start + k
            if i >= n:
                i -= n
            join = joins[i]
            if join.pipe.ready() and join.takes(message):
                self._cursor = i + 1
                return join
        return None

    def keep(self, message, now: float) -> None:
        """Put a message in the backlog, dropping the oldest beyond the limit."""
        if self.limit <= 0:
            self._onDrop(1)
            return
        backlog = self.backlog
        if len(backlog) >= self.limit:
            backlog.popleft()
            self._onDrop(1)
        backlog.append((message, now))
        if self.age is not None and self._timer is None:
            self._schedule()

    def drainFor(self, join: Taker, now: float) -> int:
        """
        Hand the backlog's messages that C{join} takes to its pipe, oldest
        first, while the pipe stays ready.

        @return: how many were delivered.
        """
        if not self.backlog:
            return 0
        self._dropExpired(now)
        backlog = self.backlog
        pipe = join.pipe
        kept = deque()
        delivered = 0
        while backlog:
            if not pipe.ready():
                kept.extend(backlog)
                break
            entry = backlog.popleft()
            if join.takes(entry[0]):
                pipe.arrive(entry[0], now)
                delivered += 1
            else:
                kept.append(entry)
        self.backlog = kept
        if not kept:
            self._cancelTimer()
        if delivered:
            try:
                self._cursor = self.joins.index(join) + 1
            except ValueError:
                pass
        return delivered

    def _schedule(self):
        delay = self.backlog[0][1] + self.age - self._clock.seconds()
        self._timer = self._clock.callLater(max(0.0, delay), self._expire)

    def _expire(self):
        self._timer = None
        self._dropExpired(self._clock.seconds())
        if self.backlog:
            self._schedule()

    def _cancelTimer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _dropExpired(self, now: float) -> None:
        if self.age is None:
            return
        backlog = self.backlog
        limit = now - self.age
        dropped = 0
        while backlog and backlog[0][1] <= limit:
            backlog.popleft()
            dropped += 1
        if dropped:
            self._onDrop(dropped)

    def stop(self) -> int:
        """
        Cancel the timer and empty the backlog.

        @return: how many messages the backlog held.
        """
        self._cancelTimer()
        n = len(self.backlog)
        self.backlog = deque()
        return n
