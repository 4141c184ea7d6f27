"""
Tests for L{rocketd.droplog.DropWarnings}: at most one warning line a
minute per resource, on an injected L{Clock}, with the count since the
previous line.
"""

from twisted.internet.task import Clock
from twisted.logger import LogLevel, Logger, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rocketd.droplog import DropWarnings


class DropWarningsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.warnings = DropWarnings(Logger(), self.clock, "{thing} dropped {count} in {seconds:.0f} s ({total} in all)")

    def lines(self, events):
        return [
            (e["thing"], e["count"], e["seconds"], e["total"]) for e in events if e["log_level"] == LogLevel.warn
        ]

    def test_twoDropsWithinAMinute(self):
        """
        Two drops within a minute: one line at once, then, a minute after
        it, one line with the count since (and the latest fields).
        """
        with capturedLogs() as events:
            self.warnings.count("p", 1, thing="p", total=1)
            self.clock.advance(10)
            self.warnings.count("p", 1, thing="p", total=2)
            self.assertEqual(self.lines(events), [("p", 1, 0.0, 1)])
            self.clock.advance(49.9)
            self.assertEqual(len(self.lines(events)), 1)
            self.clock.advance(0.1)
            self.assertEqual(self.lines(events), [("p", 1, 0.0, 1), ("p", 1, 60.0, 2)])
        self.assertEqual(events[0]["log_format"], "{thing} dropped {count} in {seconds:.0f} s ({total} in all)")

    def test_manyDropsOneLineAMinute(self):
        with capturedLogs() as events:
            for second in range(180):
                self.warnings.count("p", 2, thing="p", total=2 * (second + 1))
                self.clock.advance(1)
        self.assertEqual(
            self.lines(events), [("p", 2, 0.0, 2), ("p", 118, 60.0, 120), ("p", 120, 60.0, 240), ("p", 120, 60.0, 360)]
        )

    def test_resourcesAreSeparate(self):
        with capturedLogs() as events:
            self.warnings.count("a", 1, thing="a", total=1)
            self.warnings.count("b", 3, thing="b", total=3)
            self.warnings.count("a", 1, thing="a", total=2)
        self.assertEqual(self.lines(events), [("a", 1, 0.0, 1), ("b", 3, 0.0, 3)])

    def test_quietResourceIsForgotten(self):
        """A minute without drops: no line, no timer, no entry; the next drop is written at once."""
        with capturedLogs() as events:
            self.warnings.count("p", 1, thing="p", total=1)
            self.clock.advance(60)
            self.assertEqual((self.clock.getDelayedCalls(), self.warnings.watched), ([], 0))
            self.clock.advance(5)
            self.warnings.count("p", 1, thing="p", total=2)
        self.assertEqual(self.lines(events), [("p", 1, 0.0, 1), ("p", 1, 0.0, 2)])

    def test_stop(self):
        """Stopping writes what was not written yet and cancels every timer."""
        with capturedLogs() as events:
            self.warnings.count("a", 1, thing="a", total=1)
            self.warnings.count("b", 1, thing="b", total=1)
            self.clock.advance(30)
            self.warnings.count("a", 4, thing="a", total=5)
            self.warnings.stop()
        self.assertEqual(self.lines(events), [("a", 1, 0.0, 1), ("b", 1, 0.0, 1), ("a", 4, 30.0, 5)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
