"""
Tests for L{rocketd.http.coalesce}: the frames of one reactor turn written
once per stream at its end, one call per clock's coalescer.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rocketd.http.coalesce import Coalescer


class FakeStream:
    def __init__(self):
        self.writes = []

    def send(self, data):
        self.writes.append(data)
        return True


class Target:
    """Keeps its own frames, as a channel's fan-out does."""

    def __init__(self):
        self.frames = []
        self.flushes = []

    def flush(self, target):
        assert target is self
        self.flushes.append(b"".join(self.frames))
        self.frames = []


class CoalescerTests(TestCase):
    def test_oneWritePerTurn(self):
        """
        The frames a stream gets during one reactor turn are written
        together, in order, when the turn ends; one call serves every
        stream of the clock.
        """
        clock = Clock()
        coalescer = Coalescer(clock)
        a, b = FakeStream(), FakeStream()
        coalescer.send(a, b"1")
        coalescer.send(b, b"x")
        coalescer.send(a, b"2")
        self.assertEqual((a.writes, b.writes), ([], []))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual((a.writes, b.writes), ([b"12"], [b"x"]))
        coalescer.send(a, b"3")
        clock.advance(0)
        self.assertEqual(a.writes, [b"12", b"3"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_flushNow(self):
        """flushNow writes what waits for one stream at once, and only it."""
        clock = Clock()
        coalescer = Coalescer(clock)
        a, b = FakeStream(), FakeStream()
        coalescer.send(a, b"1")
        coalescer.send(b, b"x")
        coalescer.flushNow(a)
        self.assertEqual((a.writes, b.writes), ([b"1"], []))
        clock.advance(0)
        self.assertEqual((a.writes, b.writes), ([b"1"], [b"x"]))
        coalescer.flushNow(a)
        self.assertEqual(a.writes, [b"1"])

    def test_dueTargets(self):
        """
        A target that keeps its own frames is flushed once at the end of
        the turn, however often it was marked, by the same one call as the
        byte streams of the clock.
        """
        clock = Clock()
        coalescer = Coalescer(clock)
        stream, target = FakeStream(), Target()
        for frame in (b"a", b"b"):
            target.frames.append(frame)
            coalescer.due(target, target.flush)
        coalescer.send(stream, b"1")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual((target.flushes, stream.writes), ([b"ab"], [b"1"]))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_dueFlushNow(self):
        """flushNow flushes a due target at once; the end of the turn does not again."""
        clock = Clock()
        coalescer = Coalescer(clock)
        target, other = Target(), Target()
        target.frames.append(b"a")
        coalescer.due(target, target.flush)
        other.frames.append(b"o")
        coalescer.due(other, other.flush)
        coalescer.flushNow(target)
        self.assertEqual((target.flushes, other.flushes), ([b"a"], []))
        clock.advance(0)
        self.assertEqual((target.flushes, other.flushes), ([b"a"], [b"o"]))

    def test_markedWhileFlushing(self):
        """What a flush hands out again is not lost: another call writes it."""
        clock = Clock()
        coalescer = Coalescer(clock)
        stream = FakeStream()
        target = Target()

        def flush(t):
            target.flush(t)
            coalescer.send(stream, b"later")

        target.frames.append(b"a")
        coalescer.due(target, flush)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual((target.flushes, stream.writes), ([b"a"], [b"later"]))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_perOwner(self):
        """Coalescers share nothing: each is its owner's, on its owner's clock."""
        clock = Clock()
        first, second = Coalescer(clock), Coalescer(clock)
        a, b = FakeStream(), FakeStream()
        first.send(a, b"1")
        second.send(b, b"2")
        self.assertEqual(len(clock.getDelayedCalls()), 2)
        first.flush()
        self.assertEqual((a.writes, b.writes), ([b"1"], []))
