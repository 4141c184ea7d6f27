"""
Tests for L{rocketd.webrocket._fanout}: one engine listener per channel
feed, one write per sink per reactor turn, on the embedded engine and a
L{Clock}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rocketd.engine.memory import MemoryEngine
from rocketd.engine.message import Content, Message
from rocketd.errors import NoSuchResource
from rocketd.http.coalesce import Coalescer
from rocketd.webrocket._fanout import ChannelFans, ISink
from rocketd.webrocket._session import Subscription
from rocketd.webrocket._wire import BROADCAST, channelFrame, channelMessage


@implementer(ISink)
class Sink:
    """A sink that records its writes; C{onWrite} runs on each."""

    def __init__(self, hidden=False, onWrite=None):
        self.hidden = hidden
        self.writes = []
        self.gone = 0
        self.onWrite = onWrite

    def write(self, data):
        self.writes.append(data)
        if self.onWrite is not None:
            self.onWrite()

    def feedGone(self):
        self.gone += 1


class ListenCounting:
    """A feed whose listen() calls are counted (the rest is the real feed's)."""

    def __init__(self, feed):
        self._feed = feed
        self.listens = 0
        self.handles = []

    def listen(self, listener):
        self.listens += 1
        d = self._feed.listen(listener)
        d.addCallback(lambda handle: self.handles.append(handle) or handle)
        return d


class ChannelFansTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.engine = MemoryEngine(self.clock)
        domain = self.successResultOf(self.engine.createDomain("moon"))
        self.feed, _ = self.successResultOf(domain.createFeed("news", "fanout"))
        self.fans = ChannelFans(Coalescer(self.clock))

    def add(self, sink, feed=None):
        self.assertIsNone(self.successResultOf(self.fans.add(feed or self.feed, sink)))
        return sink

    def fire(self, *events, broadcast=False):
        messages = [channelMessage(e, {"channel": "news"}, BROADCAST if broadcast else None) for e in events]
        self.successResultOf(self.feed.publish(messages))
        return [channelFrame(m) for m in messages]

    def test_sinkInterface(self):
        verifyObject(ISink, Sink())
        verifyObject(ISink, Subscription(None, "news", {}, False))

    def test_oneWritePerTurnSameBytes(self):
        """The frames of one turn go to every sink joined, as one and the same bytes object."""
        sinks = [self.add(Sink()) for _ in range(3)]
        frames = self.fire("a", "b") + self.fire("c")
        self.assertEqual([s.writes for s in sinks], [[], [], []])
        self.clock.advance(0)
        self.assertEqual(sinks[0].writes, [b"".join(frames)])
        for sink in sinks[1:]:
            self.assertIs(sink.writes[0], sinks[0].writes[0])
        self.assertEqual(self.fans.stats, {"turns": 1, "writes": 3, "frames": 3})
        self.fire("d")
        self.clock.advance(0)
        self.assertEqual([len(s.writes) for s in sinks], [2, 2, 2])

    def test_hiddenSinksSkipBroadcasts(self):
        """Hidden sinks get the frames but broadcasts, built once for all of them."""
        seen, hidden, alsoHidden = self.add(Sink()), self.add(Sink(hidden=True)), self.add(Sink(hidden=True))
        a = self.fire("a")
        b = self.fire("b", broadcast=True)
        c = self.fire("c")
        self.clock.advance(0)
        self.assertEqual(seen.writes, [b"".join(a + b + c)])
        self.assertEqual(hidden.writes, [b"".join(a + c)])
        self.assertIs(alsoHidden.writes[0], hidden.writes[0])
        self.fire("x", broadcast=True)
        self.clock.advance(0)
        self.assertEqual(len(hidden.writes), 1, "a hidden sink given nothing is not called")
        self.assertEqual(len(seen.writes), 2)

    def test_addedMidTurn(self):
        """A sink added during a turn gets only what was published after it came."""
        early = self.add(Sink())
        before = self.fire("before")
        late, lateHidden = self.add(Sink()), self.add(Sink(hidden=True))
        after = self.fire("after") + self.fire("shout", broadcast=True)
        self.clock.advance(0)
        self.assertEqual(early.writes, [b"".join(before + after)])
        self.assertEqual(late.writes, [b"".join(after)])
        self.assertEqual(lateHidden.writes, [after[0]])
        self.fire("next")
        self.clock.advance(0)
        self.assertIs(late.writes[1], early.writes[1])

    def test_removed(self):
        """A removed sink gets nothing more, not even what waits for the turn."""
        kept, removed = self.add(Sink()), self.add(Sink())
        self.fire("a")
        self.fans.remove(self.feed, removed)
        self.fans.remove(self.feed, removed)  # twice is harmless
        self.clock.advance(0)
        self.assertEqual(removed.writes, [])
        self.assertEqual(len(kept.writes), 1)

    def test_removedDuringWrite(self):
        """A sink that removes another while it writes: the other gets nothing."""
        victim = Sink()
        killer = Sink(onWrite=lambda: self.fans.remove(self.feed, victim))
        self.add(killer)
        self.add(victim)
        self.fire("a")
        self.clock.advance(0)
        self.assertEqual(len(killer.writes), 1)
        self.assertEqual(victim.writes, [])

    def test_flush(self):
        """flush() writes what waits at once; the end of the turn then has nothing to write."""
        sink = self.add(Sink())
        frames = self.fire("a")
        self.fans.flush(self.feed)
        self.assertEqual(sink.writes, frames)
        self.clock.advance(0)
        self.assertEqual(sink.writes, frames)

    def test_oneListenerPerFeed(self):
        """However many sinks a feed has, the engine has one listener; the last sink gone stops it."""
        feed = ListenCounting(self.feed)
        sinks = [self.add(Sink(), feed) for _ in range(3)]
        self.assertEqual(feed.listens, 1)
        self.assertEqual(self.fans.sinks(feed), 3)
        for sink in sinks[:2]:
            self.fans.remove(feed, sink)
        self.assertFalse(feed.handles[0].ended.called)
        self.fans.remove(feed, sinks[2])
        self.assertFalse(self.successResultOf(feed.handles[0].ended))
        self.assertEqual(self.fans.sinks(feed), 0)
        self.add(Sink(), feed)
        self.assertEqual(feed.listens, 2)

    def test_feedDeleted(self):
        """Deleting the feed: what waits is written, then every sink hears of it once."""
        sinks = [self.add(Sink()), self.add(Sink(hidden=True))]
        frames = self.fire("last")
        self.successResultOf(self.feed.delete())
        self.assertEqual([s.writes for s in sinks], [frames, frames])
        self.assertEqual([s.gone for s in sinks], [1, 1])
        self.assertEqual(self.fans.sinks(self.feed), 0)
        self.clock.advance(0)
        self.assertEqual([s.gone for s in sinks], [1, 1])

    def test_addToDeletedFeed(self):
        self.successResultOf(self.feed.delete())
        self.failureResultOf(self.fans.add(self.feed, Sink()), NoSuchResource)
        self.assertEqual(self.fans.sinks(self.feed), 0)

    def test_notForBrowsers(self):
        """A message that is no frontend event (a RestMS client's) is not handed out."""
        sink = self.add(Sink())
        self.successResultOf(self.feed.publish([Message(address="x", contents=(Content("text/plain", b"hi"),))]))
        self.clock.advance(0)
        self.assertEqual(sink.writes, [])
        self.assertEqual(self.fans.stats["frames"], 0)

    def test_engineAnswersLater(self):
        """Sinks added while the engine sets up the listener are added when it answers."""
        answer = Deferred()
        handles = []

        class LateFeed:
            def listen(_, listener):
                def listening(handle):
                    handles.append(handle)
                    return handle

                return answer.addCallback(lambda _: self.successResultOf(self.feed.listen(listener))).addCallback(
                    listening
                )

        feed = LateFeed()
        first, second, gone = Sink(), Sink(), Sink()
        d1, d2, d3 = self.fans.add(feed, first), self.fans.add(feed, second), self.fans.add(feed, gone)
        self.fans.remove(feed, gone)
        self.assertIsNone(self.successResultOf(d3))
        self.assertNoResult(d1)
        answer.callback(None)
        self.successResultOf(d1), self.successResultOf(d2)
        self.assertEqual(self.fans.sinks(feed), 2)
        self.fire("a")
        self.clock.advance(0)
        self.assertEqual([len(s.writes) for s in (first, second, gone)], [1, 1, 0])
        self.assertEqual(len(handles), 1)
