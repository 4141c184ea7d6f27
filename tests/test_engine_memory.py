"""
What is particular to the embedded engine: its topic trie, its timers on an
injected clock, its indexes, its push consumers and its synchronous answers.
"""

import random

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from rocketd.engine._hashes import HashSource
from rocketd.engine._topic import BadPattern, TopicTrie, parsePattern, splitWords, topicMatches
from rocketd.engine.memory import MemoryEngine
from rocketd.engine.message import Content, Message
from rocketd.engine.predicates import AddressMatches
from rocketd.errors import Conflict, ContentGone, Forbidden, InvalidArgument, LimitReached, NoSuchResource


def bruteMatch(pattern, address):
    """AMQP topic matching by its definition, on word lists."""
    p, a = splitWords(pattern), splitWords(address)

    def match(i, j):
        if i == len(p):
            return j == len(a)
        if p[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(a) + 1))
        if j == len(a):
            return False
        return (p[i] == "*" or p[i] == a[j]) and match(i + 1, j + 1)

    return match(0, 0)


def randomWords(rng, vocabulary, most):
    return ".".join(rng.choice(vocabulary) for _ in range(rng.randint(0, most)))


class TopicTests(SynchronousTestCase):
    """The trie and the single matcher agree with the definition."""

    def setUp(self):
        rng = random.Random(20240501)
        self.patterns = sorted({randomWords(rng, ["a", "b", "c", "*", "#"], 5) for _ in range(600)})
        self.addresses = sorted({randomWords(rng, ["a", "b", "c", ""], 6) for _ in range(400)})

    def test_trieMatchesBruteForce(self):
        """Every address gets exactly the patterns that match it, also after removals."""
        trie = TopicTrie()
        for pattern in self.patterns:
            trie.add(parsePattern(pattern), pattern)
        self.assertEqual(len(trie), len(self.patterns))
        live = list(self.patterns)
        for round in range(2):
            for address in self.addresses:
                expected = {p for p in live if bruteMatch(p, address)}
                self.assertEqual(set(trie.match(splitWords(address))), expected, address)
            removed, live = live[::2], live[1::2]
            for pattern in removed:
                trie.remove(parsePattern(pattern), pattern)
            self.assertEqual(len(trie), len(live))
        for pattern in live:
            trie.remove(parsePattern(pattern), pattern)
        self.assertEqual(trie.match(["a"]), {})
        self.assertEqual(trie._root.children, {})

    def test_singleMatcherMatchesBruteForce(self):
        """L{topicMatches} (used by rotator joins) agrees with the definition."""
        for pattern in self.patterns[::3]:
            words = parsePattern(pattern)
            for address in self.addresses[::2]:
                self.assertEqual(topicMatches(words, splitWords(address)), bruteMatch(pattern, address), (pattern, address))

    def test_manyHashes(self):
        """Patterns full of '#' stay cheap: nodes are visited once per position."""
        trie = TopicTrie()
        trie.add(parsePattern(".".join(["#"] * 12) + ".z"), "deep")
        self.assertEqual(list(trie.match(["a"] * 40 + ["z"])), ["deep"])
        self.assertEqual(trie.match(["a"] * 40), {})

    def test_badPattern(self):
        for pattern in ("a.b*", "#a", "a.*#"):
            self.assertRaises(BadPattern, parsePattern, pattern)
        self.assertEqual(parsePattern(""), [])
        self.assertEqual(parsePattern("a..b"), ["a", "", "b"])


class HashTests(SynchronousTestCase):
    def test_hashes(self):
        """Hashes are 24 URL-safe characters (144 bits) and don't repeat."""
        source = HashSource()
        drawn = [source.draw() for _ in range(3000)]
        self.assertEqual(len(set(drawn)), len(drawn))
        for h in drawn:
            self.assertRegex(h, r"\A[A-Za-z0-9_-]{24}\Z")


class EngineTestMixin:
    def makeEngine(self, **kw):
        self.clock = Clock()
        self.clock.advance(1000)
        self.engine = MemoryEngine(self.clock, **kw)
        self.domain = self.successResultOf(self.engine.createDomain("test"))
        return self.engine

    def feed(self, type, name=None, **kw):
        feed, created = self.successResultOf(self.domain.createFeed(name, type, **kw))
        return feed

    def pipe(self, type="fifo"):
        return self.successResultOf(self.domain.createPipe(type))

    def held(self, pipe):
        return [h.message.address for h in self.successResultOf(pipe.listMessages())]

    def publish(self, feed, *names, **kw):
        return self.successResultOf(feed.publish([Message(address=n, **kw) for n in names]))


class BacklogTests(EngineTestMixin, SynchronousTestCase):
    def test_backlogAge(self):
        """Messages older than the backlog age are dropped on the clock, and counted."""
        engine = self.makeEngine(backlogAge=10)
        feed = self.feed("rotator", "r")
        self.publish(feed, "old1", "old2")
        self.clock.advance(5)
        self.publish(feed, "young")
        self.clock.advance(5)
        self.assertEqual(feed.dropped, 2)
        self.assertEqual(engine.stats["dropped"], 2)
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        self.assertEqual(self.held(pipe), ["young"])
        # No backlog timer is left (the drop warning's waits out its minute).
        self.assertEqual([c.func for c in self.clock.getDelayedCalls()], [engine.core.feedDrops._due])
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_feedBacklogAge(self):
        """A feed's own backlog age overrides the engine's."""
        self.makeEngine(backlogAge=100)
        feed = self.feed("service", "svc", backlogAge=1)
        self.publish(feed, "a")
        self.clock.advance(0.5)
        self.publish(feed, "b")
        self.clock.advance(0.6)
        self.assertEqual(feed.dropped, 1)
        self.clock.advance(0.5)
        self.assertEqual(feed.dropped, 2)
        # The drop warning's line about the second drop, then its quiet minute.
        self.clock.advance(60)
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expiredNotDeliveredBeforeTimer(self):
        """A join that comes exactly at expiry does not get the expired message."""
        self.makeEngine(backlogAge=10)
        feed = self.feed("rotator", "r")
        self.publish(feed, "a")
        pipe = self.pipe()
        # Move the time without running the timer.
        self.clock.rightNow += 10
        self.successResultOf(pipe.join(feed))
        self.assertEqual(self.held(pipe), [])
        self.assertEqual(feed.dropped, 1)

    def test_stopCancelsTimers(self):
        """Stopping the engine (or deleting the feed) cancels the expiry timers."""
        engine = self.makeEngine(backlogAge=10)
        a = self.feed("rotator", "a")
        b = self.feed("rotator", "b")
        self.publish(a, "x")
        self.publish(b, "y")
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.successResultOf(a.delete())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(a.dropped, 1)
        self.successResultOf(engine.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_zeroBacklog(self):
        """A feed with no backlog drops what no join takes."""
        self.makeEngine()
        feed = self.feed("rotator", "r", backlog=0)
        self.assertEqual(self.publish(feed, "a"), 0)
        self.assertEqual(feed.dropped, 1)

    def test_exactRoundRobin(self):
        """The rotator goes round its joins in creation order, skipping those that don't match."""
        self.makeEngine()
        feed = self.feed("rotator", "r")
        pipes = [self.pipe() for _ in range(3)]
        self.successResultOf(pipes[0].join(feed))
        self.successResultOf(pipes[1].join(feed, "even.*"))
        self.successResultOf(pipes[2].join(feed))
        self.publish(feed, "odd.1", "even.2", "odd.3", "odd.4", "even.5", "even.6")
        self.assertEqual(
            [self.held(p) for p in pipes],
            [["odd.1", "odd.4"], ["even.2", "even.5"], ["odd.3", "even.6"]],
        )

    def test_roundRobinSurvivesJoinRemoval(self):
        self.makeEngine()
        feed = self.feed("rotator", "r")
        pipes = [self.pipe() for _ in range(3)]
        joins = [self.successResultOf(p.join(feed))[0] for p in pipes]
        self.publish(feed, "1", "2")
        self.successResultOf(joins[0].delete())
        self.publish(feed, "3", "4", "5")
        self.assertEqual([self.held(p) for p in pipes], [["1"], ["2", "4"], ["3", "5"]])

    def test_newJoinTakesBacklogFirst(self):
        """A new join takes the matching backlog before later messages, in order."""
        self.makeEngine()
        feed = self.feed("rotator", "r")
        self.publish(feed, "a.1", "b.1", "a.2")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed, "a.*"))
        self.publish(feed, "a.3")
        self.assertEqual(self.held(pipe), ["a.1", "a.2", "a.3"])
        other = self.pipe()
        self.successResultOf(other.join(feed))
        self.assertEqual(self.held(other), ["b.1"])


class StagingTests(EngineTestMixin, SynchronousTestCase):
    """Staged contents that no message claims expire on the clock, under one timer."""

    def stage(self, feed, body=b"x"):
        return self.successResultOf(feed.stageContent(Content("text/plain", body)))

    def test_unclaimedContentsExpire(self):
        """A staged content goes stageTTL seconds after it was staged (lookup and claim fail)."""
        self.makeEngine(stageTTL=10)
        feed = self.feed("fanout", "f")
        first = self.stage(feed)
        self.clock.advance(4)
        second = self.stage(feed)
        self.clock.advance(5.5)
        self.successResultOf(self.engine.lookup(first.hash))
        self.clock.advance(0.5)
        self.failureResultOf(self.engine.lookup(first.hash), NoSuchResource)
        self.failureResultOf(feed.claimContent(first.hash), ContentGone)
        self.assertEqual(self.successResultOf(feed.claimContent(second.hash)).body, b"x")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expiryFreesTheBounds(self):
        """An expired content no longer counts against its feed's bounds."""
        self.makeEngine(stageTTL=10, stageCount=1)
        feed = self.feed("fanout", "f")
        self.stage(feed)
        self.failureResultOf(feed.stageContent(Content("text/plain", b"y")), LimitReached)
        self.clock.advance(10)
        self.stage(feed)

    def test_oneTimer(self):
        """
        However many contents are staged, on however many feeds, one timer
        waits, due at the oldest's expiry; none is left once none is staged,
        nor after the engine stops.
        """
        engine = self.makeEngine(stageTTL=10)
        feeds = [self.feed("fanout", "f%d" % i) for i in range(3)]
        staged = []
        for i in range(9):
            staged.append(self.stage(feeds[i % 3]))
            self.clock.advance(1)
        [timer] = self.clock.getDelayedCalls()
        self.assertEqual(timer.getTime(), 1010)
        self.clock.advance(1)  # t=1010: the first expires; the next is due at 1011
        self.failureResultOf(engine.lookup(staged[0].hash), NoSuchResource)
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [1011])
        for content in staged[1:5]:
            self.successResultOf(content.delete())
        self.successResultOf(feeds[0].delete())
        self.successResultOf(feeds[1].claimContent(staged[7].hash))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(staged[5].delete())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(staged[8].delete())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.stage(feeds[2])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(engine.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dueBeforeItsTimerRuns(self):
        """A content whose time is up can't be claimed, even before the timer has run."""
        self.makeEngine(stageTTL=10)
        feed = self.feed("fanout", "f")
        staged = self.stage(feed)
        self.clock.rightNow += 10
        self.failureResultOf(feed.claimContent(staged.hash), ContentGone)

    def test_limitSentences(self):
        """The bound a stage hits is named, with the feed."""
        self.makeEngine(stageCount=1, stageBytes=4)
        feed = self.feed("fanout", "pics")
        self.stage(feed, b"abc")
        failure = self.failureResultOf(feed.stageContent(Content("text/plain", b"d")), LimitReached)
        self.assertIn("'pics' already keeps 1 staged contents", failure.value.message)
        other = self.feed("fanout")
        failure = self.failureResultOf(other.stageContent(Content("text/plain", b"defgh")), LimitReached)
        self.assertIn("This feed can't keep 5 more bytes", failure.value.message)
        self.assertIn("more than the 4 it may keep", failure.value.message)

class DropWarningTests(EngineTestMixin, SynchronousTestCase):
    """
    What the limits drop reaches the log as a warning, at most once a
    minute per pipe or feed, with the count since the previous line.
    """

    def warnings(self, events):
        return [e for e in events if e["log_level"] == LogLevel.warn]

    def test_pipeDepth(self):
        self.makeEngine(pipeDepth=2)
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        with capturedLogs() as events:
            self.publish(feed, "a", "b", "c")
            self.clock.advance(30)
            self.publish(feed, "d")
            [first] = self.warnings(events)
            self.assertEqual((first["pipe"], first["domain"], first["count"], first["dropped"]), (pipe.hash, "test", 1, 1))
            self.clock.advance(30)
            second = self.warnings(events)[1:]
            self.assertEqual([(e["count"], e["seconds"], e["dropped"]) for e in second], [(1, 60.0, 2)])
        self.assertIn("depth limit", formatEvent(second[0]))
        self.assertIn(pipe.hash, formatEvent(second[0]))
        self.assertEqual(pipe.dropped, 2)

    def test_feedBacklog(self):
        """A rotator's backlog drops are warned about, and grow the feed's version (its document shows them)."""
        self.makeEngine(feedBacklog=1)
        feed = self.feed("rotator", "r")
        version = feed.version
        with capturedLogs() as events:
            self.publish(feed, "a", "b", "c")
            self.clock.advance(60)
            self.publish(feed, "d")
            self.clock.advance(60)
        lines = [(e["feed"], e["count"], e["dropped"]) for e in self.warnings(events)]
        self.assertEqual(lines, [("r", 1, 1), ("r", 1, 2), ("r", 1, 3)])
        self.assertIn("backlog", formatEvent(self.warnings(events)[0]))
        self.assertEqual(feed.dropped, 3)
        self.assertEqual(feed.version, version + 3)

    def test_deletedBacklogIsNotWarned(self):
        """A backlog deleted with its feed is counted, not warned about."""
        self.makeEngine()
        feed = self.feed("service", "s")
        self.publish(feed, "a")
        with capturedLogs() as events:
            self.successResultOf(feed.delete())
        self.assertEqual((feed.dropped, self.warnings(events)), (1, []))

    def test_stopWritesTheRest(self):
        engine = self.makeEngine(pipeDepth=1)
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        with capturedLogs() as events:
            self.publish(feed, "a", "b", "c")
            self.successResultOf(engine.stop())
        self.assertEqual([e["count"] for e in self.warnings(events)], [1, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _CountingRegex:
    """Stands for a predicate's compiled expression: takes everything, and says whom routing asked."""

    def __init__(self, calls, tag):
        self.calls = calls
        self.tag = tag

    def fullmatch(self, address):
        self.calls.append(self.tag)
        return address


def countingPredicate(calls, tag):
    """An AddressMatches whose expression records in C{calls} that routing tested it."""
    predicate = AddressMatches(f"(?#{tag}).*")
    object.__setattr__(predicate, "regex", _CountingRegex(calls, tag))
    return predicate


class IndexTests(EngineTestMixin, SynchronousTestCase):
    """Routing tests only the joins that can match (as their predicates see)."""

    def countingJoins(self, feed, patterns, **kw):
        calls = []
        pipe = self.pipe()
        for pattern in patterns:
            self.successResultOf(pipe.join(feed, pattern, predicate=countingPredicate(calls, pattern), **kw))
        return pipe, calls

    def test_directNoScan(self):
        self.makeEngine()
        feed = self.feed("direct", "d")
        pipe, calls = self.countingJoins(feed, [f"key{i}" for i in range(2000)])
        self.assertEqual(self.publish(feed, "key1234", "nokey"), 1)
        self.assertEqual(calls, ["key1234"])
        self.assertEqual(self.held(pipe), ["key1234"])

    def test_directSharedAddress(self):
        """Joins sharing a direct address each take its messages, and leave it one by one."""
        self.makeEngine()
        feed = self.feed("direct", "d")
        pipes = [self.pipe() for _ in range(3)]
        joins = [self.successResultOf(p.join(feed, "k"))[0] for p in pipes]
        self.assertEqual(self.publish(feed, "k"), 3)
        self.successResultOf(joins[0].delete())
        self.assertEqual(self.publish(feed, "k"), 2)
        self.successResultOf(joins[2].delete())
        self.assertEqual(self.publish(feed, "k"), 1)
        self.successResultOf(joins[1].delete())
        self.assertEqual(self.publish(feed, "k"), 0)
        self.assertEqual([self.held(p) for p in pipes], [["k"], ["k", "k", "k"], ["k", "k"]])
        again = self.successResultOf(pipes[0].join(feed, "k"))[0]
        self.assertEqual(self.publish(feed, "k"), 1)
        self.successResultOf(again.delete())

    def test_topicNoScan(self):
        self.makeEngine()
        feed = self.feed("topic", "t")
        pipe, calls = self.countingJoins(feed, [f"k{i}.*" for i in range(2000)] + ["#.end"])
        self.assertEqual(self.publish(feed, "k77.x"), 1)
        self.assertEqual(calls, ["k77.*"])
        self.publish(feed, "k5.x.end")
        self.assertEqual(calls, ["k77.*", "#.end"])

    def test_headersIndexed(self):
        """A headers feed tests only joins sharing a header item with the message."""
        self.makeEngine()
        feed = self.feed("headers", "h")
        calls = []
        pipe = self.pipe()
        for i in range(500):
            self.successResultOf(pipe.join(feed, "*", {"id": str(i), "kind": "x"}, predicate=countingPredicate(calls, i)))
        self.assertEqual(self.publish(feed, "m", headers={"id": "42", "kind": "x"}), 1)
        self.assertEqual(calls, [42])
        self.assertEqual(self.publish(feed, "m", headers={"id": "42"}), 0)

    def test_headersUnhashableValue(self):
        """A header value that can't be indexed matches nothing and breaks nothing."""
        self.makeEngine()
        feed = self.feed("headers", "h")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed, "*", {"a": "1"}))
        self.assertEqual(self.publish(feed, "m", headers={"b": ["x"], "a": "1"}), 1)


class ConsumeTests(EngineTestMixin, SynchronousTestCase):
    def setUp(self):
        self.makeEngine()
        self.feedF = self.feed("fanout", "f")
        self.pipeP = self.pipe("stream")
        self.successResultOf(self.pipeP.join(self.feedF))
        self.got = []

    def test_heldFirstThenArrivals(self):
        """A consumer gets the held messages, then each arrival; each is removed once handed."""
        self.publish(self.feedF, "a", "b")
        handle = self.successResultOf(self.pipeP.consume(lambda h: self.got.append(h.message.address)))
        self.assertEqual(self.got, ["a", "b"])
        self.publish(self.feedF, "c")
        self.assertEqual(self.got, ["a", "b", "c"])
        self.assertEqual(self.held(self.pipeP), [])
        handle.stop()
        self.assertFalse(self.pipeP.consumed)
        self.publish(self.feedF, "d")
        self.assertEqual(self.got, ["a", "b", "c"])
        self.assertEqual(self.held(self.pipeP), ["d"])
        self.successResultOf(self.pipeP.consume(lambda h: self.got.append(h.message.address)))
        self.assertEqual(self.got[-1], "d")

    def test_oneConsumer(self):
        self.successResultOf(self.pipeP.consume(self.got.append))
        self.failureResultOf(self.pipeP.consume(self.got.append), Conflict)

    def test_pauseAndResume(self):
        """Returning False leaves the message at the head and pauses until resume()."""
        answers = [None, False, None, None, None]

        def consumer(held):
            self.got.append(held.message.address)
            return answers.pop(0)

        handle = self.successResultOf(self.pipeP.consume(consumer))
        self.publish(self.feedF, "a", "b", "c")
        self.assertEqual(self.got, ["a", "b"])
        self.assertEqual(self.held(self.pipeP), ["b", "c"])
        self.publish(self.feedF, "d")
        self.assertEqual(self.got, ["a", "b"])
        handle.resume()
        self.assertEqual(self.got, ["a", "b", "b", "c", "d"])
        self.assertEqual(self.held(self.pipeP), [])

    def test_consumerSeesConsistentEngine(self):
        """A consumer runs after the publish has routed, and may publish itself."""
        other = self.pipe()
        self.successResultOf(other.join(self.feedF))

        def consumer(held):
            # Both messages of the publish are already in the other pipe.
            self.got.append((held.message.address, self.held(other)))
            if held.message.address == "a":
                self.successResultOf(self.feedF.publish([Message(address="reply")]))

        self.successResultOf(self.pipeP.consume(consumer))
        self.publish(self.feedF, "a", "b")
        self.assertEqual(
            self.got,
            [("a", ["a", "b"]), ("b", ["a", "b", "reply"]), ("reply", ["a", "b", "reply"])],
        )

    def test_consumerFailure(self):
        """A consumer that raises is logged; its message counts as handed."""

        def consumer(held):
            self.got.append(held.message.address)
            raise ValueError("broken")

        self.successResultOf(self.pipeP.consume(consumer))
        self.publish(self.feedF, "a", "b")
        self.assertEqual(self.got, ["a", "b"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)

    def test_ondemandConsumer(self):
        """A consumed ondemand pipe pulls from its rotator one message at a time."""
        rotator = self.feed("rotator", "r")
        pipe = self.pipe("ondemand")
        other = self.pipe("ondemand")
        self.successResultOf(pipe.join(rotator))
        self.successResultOf(other.join(rotator))
        self.publish(rotator, "1", "2", "3")
        self.successResultOf(pipe.consume(lambda h: self.got.append(h.message.address)))
        self.assertEqual(self.got, ["1", "2", "3"])
        self.assertEqual(self.held(other), [])

    def test_ondemandPausedHoldsOne(self):
        rotator = self.feed("rotator", "r")
        pipe = self.pipe("ondemand")
        self.successResultOf(pipe.join(rotator))
        self.publish(rotator, "1", "2")
        handle = self.successResultOf(pipe.consume(lambda h: self.got.append(h.message.address) or False))
        self.assertEqual(self.got, ["1"])
        self.assertEqual(self.held(pipe), ["1"])
        handle.stop()
        self.successResultOf(pipe.consume(lambda h: self.got.append(h.message.address)))
        self.assertEqual(self.got, ["1", "1", "2"])

    def test_resumeEndsLikeAnOperation(self):
        """
        resume() runs in the operation bracket: what the pipe pulls while it
        delivers is served before it returns, and nothing is left pending.
        """
        rotator = self.feed("rotator", "r")
        pipe = self.pipe("ondemand")
        self.successResultOf(pipe.join(rotator))
        self.publish(rotator, "1", "2", "3")
        answers = [False]

        def consumer(held):
            self.got.append(held.message.address)
            return answers.pop() if answers else None

        handle = self.successResultOf(pipe.consume(consumer))
        self.assertEqual(self.got, ["1"])
        handle.resume()
        self.assertEqual(self.got, ["1", "1", "2", "3"])
        self.assertEqual(list(self.engine.core.pending), [])


class ListenTests(EngineTestMixin, SynchronousTestCase):
    def setUp(self):
        self.makeEngine()
        self.feedF = self.feed("fanout", "f")

    def test_afterRouting(self):
        """
        Listeners run once the whole publish has routed: each sees every
        pipe already holding the message, and may call engine operations.
        """
        pipe = self.pipe()
        self.successResultOf(pipe.join(self.feedF))
        seen = []
        self.successResultOf(self.feedF.listen(lambda m: seen.append((m.address, self.held(pipe)))))
        self.publish(self.feedF, "a", "b")
        self.assertEqual(seen, [("a", ["a", "b"]), ("b", ["a", "b"])])

    def test_listenerDeletesFeed(self):
        """A listener deleting its feed during a hand-out: the rest is still handed, then every handle ends."""
        got = []

        def deleter(message):
            got.append(("deleter", message.address))
            self.successResultOf(self.feedF.delete())

        handles = [
            self.successResultOf(self.feedF.listen(deleter)),
            self.successResultOf(self.feedF.listen(lambda m: got.append(("other", m.address)))),
        ]
        self.publish(self.feedF, "a", "b")
        self.assertEqual(got, [("deleter", "a"), ("other", "a"), ("deleter", "b"), ("other", "b")])
        self.assertEqual([self.successResultOf(h.ended) for h in handles], [True, True])


class EngineTests(EngineTestMixin, SynchronousTestCase):
    def test_answersAtOnce(self):
        """Every operation answers synchronously (the daemon relies on it at start)."""
        self.makeEngine()
        self.assertEqual(self.successResultOf(self.engine.getDomain("test")).name, "test")

    def test_timestampsFromClock(self):
        self.makeEngine()
        feed = self.feed("fanout", "f")
        self.assertEqual(feed.created, 1000)
        self.clock.advance(5)
        pipe = self.pipe()
        self.assertEqual((pipe.created, self.domain.modified), (1005, 1005))
        self.clock.advance(5)
        self.successResultOf(pipe.join(feed))
        self.clock.advance(5)
        self.publish(feed, "a")
        [held] = self.successResultOf(pipe.listMessages())
        self.assertEqual((held.created, pipe.modified), (1015, 1015))
        self.clock.advance(5)
        self.successResultOf(feed.update(license="MIT"))
        self.assertEqual(feed.modified, 1020)

    def test_sharedMessage(self):
        """Routing sets the message's feed and hands the same object to every pipe."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipes = [self.pipe() for _ in range(100)]
        for pipe in pipes:
            self.successResultOf(pipe.join(feed))
        message = Message(address="m")
        self.assertEqual(self.successResultOf(feed.publish([message])), 100)
        self.assertIs(message.feed, feed)
        for pipe in pipes:
            [held] = self.successResultOf(pipe.listMessages())
            self.assertIs(held.message, message)
        self.assertEqual(self.engine.stats, {"published": 1, "delivered": 100, "dropped": 0})

    def test_republishElsewhereRefused(self):
        """
        A message published again to another feed is refused, not copied:
        its holders keep their feed, its cache stays, nothing is counted.
        """
        self.makeEngine()
        first, second = self.feed("fanout", "a"), self.feed("fanout", "b")
        p1, p2 = self.pipe(), self.pipe()
        self.successResultOf(p1.join(first))
        self.successResultOf(p2.join(second))
        message = Message(address="m")
        self.successResultOf(first.publish([message]))
        message.cache["xml"] = b"<cached/>"
        self.failureResultOf(second.publish([message]), InvalidArgument)
        [h1] = self.successResultOf(p1.listMessages())
        self.assertIs(h1.message, message)
        self.assertIs(message.feed, first)
        self.assertEqual(message.cache, {"xml": b"<cached/>"})
        self.assertEqual(self.held(p2), [])
        self.assertEqual(self.engine.stats["published"], 1)

    def test_listenersShareThePublishedObject(self):
        """Pipes and listeners of the embedded engine get the object published, not a copy."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        heard = []
        self.successResultOf(feed.listen(heard.append))
        message = Message(address="m")
        self.successResultOf(feed.publish([message]))
        [held] = self.successResultOf(pipe.listMessages())
        self.assertIs(held.message, message)
        self.assertEqual(len(heard), 1)
        self.assertIs(heard[0], message)

    def test_waiterCallbackAfterRouting(self):
        """A waiter fires after the whole publish, and may call the engine."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        seen = []
        d = pipe.wait()
        d.addCallback(lambda held: seen.append((held.message.address, self.held(pipe))))
        d.addCallback(lambda _: pipe.remove(self.successResultOf(pipe.listMessages())[0].hash))
        self.publish(feed, "a", "b")
        self.assertEqual(seen, [("a", ["a", "b"])])
        self.assertEqual(self.held(pipe), ["b"])

    def test_stopCancelsWaits(self):
        self.makeEngine()
        pipe = self.pipe()
        d = pipe.wait()
        self.successResultOf(self.engine.stop())
        self.failureResultOf(d, CancelledError)

    def test_deletedResources(self):
        """Operations on deleted resources fail with NoSuchResource."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(feed.delete())
        self.successResultOf(pipe.delete())
        self.failureResultOf(feed.publish([Message()]), NoSuchResource)
        self.failureResultOf(pipe.wait(), NoSuchResource)
        other = self.pipe()
        self.failureResultOf(other.join(feed), NoSuchResource)
        self.successResultOf(self.engine.deleteDomain("test"))
        self.failureResultOf(self.domain.createPipe(), NoSuchResource)
        self.failureResultOf(self.domain.createFeed("x", "fanout"), NoSuchResource)

    def test_crossDomain(self):
        """A pipe may join another domain's feed; deleting that domain removes the join."""
        self.makeEngine()
        moon = self.successResultOf(self.engine.createDomain("moon"))
        svc, _ = self.successResultOf(moon.createFeed("svc", "service"))
        events, _ = self.successResultOf(moon.createFeed("events", "system"))
        watcher = self.successResultOf(moon.createPipe())
        self.successResultOf(watcher.join(events, "join.*"))
        pipe = self.pipe()
        join, _ = self.successResultOf(pipe.join(svc))
        self.publish(svc, "job")
        self.assertEqual(self.held(pipe), ["job"])
        # The join's events reach the feed's domain too.
        self.assertEqual(self.held(watcher)[-1], "join.created")
        self.successResultOf(pipe.delete())
        self.assertEqual(self.held(watcher)[-1], "join.deleted")
        self.failureResultOf(moon.getFeed("svc"), NoSuchResource)
        other = self.pipe()
        fan, _ = self.successResultOf(moon.createFeed("fan", "fanout"))
        j, _ = self.successResultOf(other.join(fan))
        self.successResultOf(self.engine.deleteDomain("moon"))
        self.assertEqual(len(self.successResultOf(other.listJoins())), 1)
        self.failureResultOf(self.engine.lookup(j.hash), NoSuchResource)

    def test_ondemandDefaultJoin(self):
        """Messages addressed to an ondemand pipe itself are held like a fifo's."""
        self.makeEngine()
        pipe = self.pipe("ondemand")
        default = self.successResultOf(self.domain.getFeed("default"))
        self.publish(default, pipe.name, pipe.name)
        self.assertEqual(self.held(pipe), [pipe.name, pipe.name])

    def test_contentHashesDerived(self):
        """Held contents are found by the message hash plus an index, and nothing else."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        from rocketd.engine.message import Content

        self.successResultOf(feed.publish([Message(address="a", contents=(Content("text/plain", b"x"),))]))
        [held] = self.successResultOf(pipe.listMessages())
        self.assertEqual(held.contentHashes, (held.hash + ".0",))
        for bad in (held.hash + ".1", held.hash + ".00", held.hash + ".-1", held.hash + ".\u0663", pipe.hash + ".0"):
            self.failureResultOf(self.engine.lookup(bad), NoSuchResource)

    def test_deletedContentDatesItsMessage(self):
        """Deleting a held message's content stamps the message with the clock; its hash changes nothing else."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        from rocketd.engine.message import Content

        contents = (Content("text/plain", b"x"), Content("text/plain", b"y"))
        self.successResultOf(feed.publish([Message(address="a", contents=contents)]))
        [held] = self.successResultOf(pipe.listMessages())
        self.assertEqual((held.modified, held.version), (1000, 1))
        self.clock.advance(5)
        content = self.successResultOf(self.engine.lookup(held.hash + ".0"))
        self.successResultOf(content.delete())
        self.assertEqual((held.modified, held.version), (1005, 2))
        self.failureResultOf(self.engine.lookup(held.hash + ".0"), NoSuchResource)
        self.assertEqual(held.contentHashes, (held.hash + ".1",))
        # The shared message is untouched.
        self.assertEqual(held.message.contents, contents)

    def test_forbiddenJoinDelete(self):
        self.makeEngine()
        pipe = self.pipe()
        [default] = self.successResultOf(pipe.listJoins())
        self.failureResultOf(default.delete(), Forbidden)

    def test_startsAtOnce(self):
        """The embedded engine has nothing to prepare: start() has fired when it returns."""
        engine = self.makeEngine()
        self.assertIsNone(self.successResultOf(engine.start()))

    def test_badSettings(self):
        self.assertRaises(ValueError, MemoryEngine, Clock(), pipeDepth=0)
        self.assertRaises(ValueError, MemoryEngine, Clock(), feedBacklog=-1)
        for bad in ({"stageTTL": 0}, {"stageCount": 0}, {"stageBytes": 0}):
            self.assertRaises(ValueError, MemoryEngine, Clock(), **bad)

    def test_asyncletObjectKeepsItsHash(self):
        """A looked-up asynclet keeps naming the same message after it arrives."""
        self.makeEngine()
        feed = self.feed("fanout", "f")
        pipe = self.pipe()
        self.successResultOf(pipe.join(feed))
        asynclet = self.successResultOf(self.engine.lookup(pipe.asynclet))
        slot = asynclet.hash
        self.publish(feed, "a", "b")
        self.assertEqual(asynclet.hash, slot)
        self.assertEqual(self.successResultOf(pipe.wait(asynclet.hash)).message.address, "a")


