"""
The engine contract: what every L{rocketd.interfaces.IEngine} must do.

L{EngineContractTests} is a mixin with one hook, C{makeEngine}; each engine
plugs in with one class::

    class SomeEngineContractTests(EngineContractTests, TestCase):
        def makeEngine(self):
            return engine, clock

C{setUp} starts the engine (L{IEngine.start}) and C{stop}s it after the
test. The tests use only the interfaces and wait on Deferreds (an engine
may answer later), and check that something did *not* arrive by publishing
a sentinel after it and looking once the sentinel has arrived.
"""

import json
import re
import uuid

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rocketd.engine.memory import MemoryEngine
from rocketd.engine.message import Content, Message
from rocketd.engine.predicates import AddressMatches, predicateFromJSON, predicateToJSON
from rocketd.errors import (
    Conflict,
    ContentGone,
    Forbidden,
    InvalidArgument,
    InvalidName,
    LimitReached,
    NoSuchResource,
)
from rocketd.interfaces import (
    DEFAULT_FEED,
    IAsynclet,
    IContent,
    IDomain,
    IEngine,
    IFeed,
    IHeldMessage,
    IJoin,
    IPipe,
)

_URLSAFE = re.compile(r"[A-Za-z0-9_-]{22,}\Z")


def addresses(held):
    return [h.message.address for h in held]


class EngineContractTests:
    """
    The contract tests. C{makeEngine} must build the engine with
    C{pipeDepth=PIPE_DEPTH}, C{feedBacklog=FEED_BACKLOG}, no backlog age,
    and feeds that keep at most C{STAGE_COUNT} unclaimed staged contents
    and C{STAGE_BYTES} bytes of them.
    """

    PIPE_DEPTH = 8
    FEED_BACKLOG = 8
    STAGE_COUNT = 4
    STAGE_BYTES = 64
    #: Seconds a test may take (a networked engine may override it).
    timeout = 10

    def makeEngine(self):
        """
        @return: C{(engine, clock)}: a new engine, not started, and the
            clock it reads (the suite never advances it).
        """
        raise NotImplementedError()

    @inlineCallbacks
    def setUp(self):
        self.engine, self.clock = self.makeEngine()
        self.addCleanup(self.engine.stop)
        self.started = yield self.engine.start()

    # -- helpers --

    @inlineCallbacks
    def newDomain(self):
        domain = yield self.engine.createDomain(f"contract-{uuid.uuid4().hex}", "contract tests")
        return domain

    @inlineCallbacks
    def newPipe(self, domain, type="fifo"):
        pipe = yield domain.createPipe(type)
        return pipe

    @inlineCallbacks
    def feed(self, domain, type, name=None, **kw):
        feed, created = yield domain.createFeed(name, type, **kw)
        self.assertTrue(created)
        return feed

    @inlineCallbacks
    def held(self, pipe, count):
        """Fire with the pipe's held messages once it holds at least C{count}."""
        held = yield pipe.listMessages()
        while len(held) < count:
            yield pipe.wait(held[-1].next if held else None)
            held = yield pipe.listMessages()
        return held

    @inlineCallbacks
    def heldAfterSentinel(self, pipe, feed, sentinel="sentinel", count=None):
        """
        Publish a message the pipe takes, wait for it, and fire with the
        addresses held before the first sentinel (a sentinel published for
        another pipe of the same test may have come first).
        """
        yield feed.publish([Message(address=sentinel)])
        held = addresses((yield pipe.listMessages()))
        while sentinel not in held:
            last = yield pipe.listMessages()
            yield pipe.wait(last[-1].next if last else None)
            held = addresses((yield pipe.listMessages()))
        return held[: held.index(sentinel)]

    # -- start --

    @inlineCallbacks
    def test_start(self):
        """start() fires with None, and the engine then serves operations."""
        self.assertIsNone(self.started)
        domain = yield self.newDomain()
        found = yield self.engine.getDomain(domain.name)
        self.assertIs(found, domain)

    # -- interfaces --

    @inlineCallbacks
    def test_interfaces(self):
        """Every resource provides its interface."""
        verifyObject(IEngine, self.engine)
        domain = yield self.newDomain()
        verifyObject(IDomain, domain)
        feed = yield self.feed(domain, "fanout", "news")
        verifyObject(IFeed, feed)
        pipe = yield self.newPipe(domain)
        verifyObject(IPipe, pipe)
        join, _ = yield pipe.join(feed)
        verifyObject(IJoin, join)
        asynclet = yield self.engine.lookup(pipe.asynclet)
        verifyObject(IAsynclet, asynclet)
        self.assertIs(asynclet.pipe, pipe)
        staged = yield feed.stageContent(Content("text/plain", b"hi"))
        verifyObject(IContent, staged)
        body = yield feed.claimContent(staged.hash)
        yield feed.publish([Message(address="a", contents=(body,))])
        [held] = yield self.held(pipe, 1)
        verifyObject(IHeldMessage, held)
        content = yield self.engine.lookup(held.contentHashes[0])
        verifyObject(IContent, content)
        self.assertEqual(content.content, Content("text/plain", b"hi"))

    @inlineCallbacks
    def test_hashes(self):
        """Every hash is URL-safe, long enough and registered for lookup."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "news")
        pipe = yield self.newPipe(domain)
        join, _ = yield pipe.join(feed)
        hashes = [feed.hash, pipe.hash, join.hash, pipe.asynclet]
        for h in hashes:
            self.assertRegex(h, _URLSAFE)
        self.assertEqual(len(set(hashes)), 4)
        self.assertEqual(pipe.name, pipe.hash)
        for resource in (feed, pipe, join):
            found = yield self.engine.lookup(resource.hash)
            self.assertIs(found, resource)
        yield self.assertFailure(self.engine.lookup("no-such-hash-at-all-here"), NoSuchResource)

    # -- domains --

    @inlineCallbacks
    def test_domainLifecycle(self):
        """A domain is created once, with its default feed, listed, and deleted with everything in it."""
        domain = yield self.newDomain()
        again = yield self.engine.createDomain(domain.name, "other title")
        self.assertIs(again, domain)
        self.assertEqual(domain.title, "contract tests")
        got = yield self.engine.getDomain(domain.name)
        self.assertIs(got, domain)
        listed = yield self.engine.listDomains()
        self.assertIn(domain, listed)
        default = yield domain.getFeed(DEFAULT_FEED)
        self.assertEqual((default.type, default.isDefault), ("direct", True))
        feeds = yield domain.listFeeds()
        self.assertEqual(feeds, [default])

        feed = yield self.feed(domain, "topic", "news")
        pipe = yield self.newPipe(domain)
        join, _ = yield pipe.join(feed, "#")
        yield feed.publish([Message(address="a")])
        [held] = yield self.held(pipe, 1)
        yield self.engine.deleteDomain(domain.name)
        yield self.assertFailure(self.engine.getDomain(domain.name), NoSuchResource)
        listed = yield self.engine.listDomains()
        self.assertNotIn(domain, listed)
        for h in (feed.hash, pipe.hash, join.hash, held.hash, default.hash, pipe.asynclet):
            yield self.assertFailure(self.engine.lookup(h), NoSuchResource)
        # Deleting a domain that is gone is not an error.
        yield self.engine.deleteDomain(domain.name)

    @inlineCallbacks
    def test_domainNames(self):
        """Domain names are vhost-like paths; others are refused."""
        for name in ("moon", "apps/chat", "a.b_c-d"):
            domain = yield self.engine.createDomain(name)
            self.assertEqual(domain.name, name)
            yield self.engine.deleteDomain(name)
        for name in ("", "x" * 257, "sp ace", "a?b", "caf\u00e9"):
            yield self.assertFailure(self.engine.createDomain(name), InvalidName)

    @inlineCallbacks
    def test_domainVersion(self):
        """A domain's version grows when a feed or pipe is added or removed."""
        domain = yield self.newDomain()
        v0 = domain.version
        feed = yield self.feed(domain, "fanout", "news")
        v1 = domain.version
        self.assertGreater(v1, v0)
        pipe = yield self.newPipe(domain)
        v2 = domain.version
        self.assertGreater(v2, v1)
        yield feed.delete()
        v3 = domain.version
        self.assertGreater(v3, v2)
        yield pipe.delete()
        self.assertGreater(domain.version, v3)

    # -- feeds --

    @inlineCallbacks
    def test_feedCreateIdempotent(self):
        """Creating a public feed again with the same type gives it back; another type conflicts."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "topic", "news", title="News")
        same, created = yield domain.createFeed("news", "topic")
        self.assertIs(same, feed)
        self.assertFalse(created)
        yield self.assertFailure(domain.createFeed("news", "fanout"), Conflict)
        got = yield domain.getFeed("news")
        self.assertIs(got, feed)
        self.assertEqual((feed.name, feed.type, feed.title, feed.domain, feed.isDefault), ("news", "topic", "News", domain.name, False))
        default, created = yield domain.createFeed(DEFAULT_FEED, "direct")
        self.assertFalse(created)
        self.assertTrue(default.isDefault)

    @inlineCallbacks
    def test_feedCreateWithoutType(self):
        """With no type, an existing public feed comes back whatever its type; a new one is a topic feed."""
        domain = yield self.newDomain()
        for type in ("fanout", "service", "system"):
            feed = yield self.feed(domain, type, "f-" + type)
            same, created = yield domain.createFeed("f-" + type, None)
            self.assertIs(same, feed)
            self.assertFalse(created)
        default, created = yield domain.createFeed(DEFAULT_FEED, None)
        self.assertTrue(default.isDefault)
        self.assertFalse(created)
        new, created = yield domain.createFeed("fresh", None)
        self.assertTrue(created)
        self.assertEqual(new.type, "topic")
        private, created = yield domain.createFeed(None, None)
        self.assertTrue(created)
        self.assertEqual(private.type, "topic")

    @inlineCallbacks
    def test_feedNamesAndTypes(self):
        """Invalid feed names and unknown types are refused; private feeds are not listed."""
        domain = yield self.newDomain()
        for name in ("", "x" * 129, "amq.direct", "a b", "a/b", "caf\u00e9"):
            yield self.assertFailure(domain.createFeed(name, "fanout"), InvalidName)
        ok = yield self.feed(domain, "fanout", "x" * 128)
        self.assertEqual(ok.name, "x" * 128)
        yield self.assertFailure(domain.createFeed("good", "exchange"), InvalidArgument)
        yield self.assertFailure(domain.createPipe("bucket"), InvalidArgument)
        private = yield self.feed(domain, "fanout")
        self.assertIsNone(private.name)
        found = yield self.engine.lookup(private.hash)
        self.assertIs(found, private)
        feeds = yield domain.listFeeds()
        self.assertNotIn(private, feeds)
        self.assertEqual([f.name for f in feeds], [DEFAULT_FEED, "x" * 128])

    @inlineCallbacks
    def test_feedUpdate(self):
        """A feed's title and license change and its version grows; the default feed can't change."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "news", title="t", license="l")
        v = feed.version
        same = yield feed.update(title="T")
        self.assertIs(same, feed)
        self.assertEqual((feed.title, feed.license), ("T", "l"))
        self.assertGreater(feed.version, v)
        default = yield domain.getFeed(DEFAULT_FEED)
        yield self.assertFailure(default.update(title="x"), Forbidden)
        yield self.assertFailure(default.delete(), Forbidden)

    @inlineCallbacks
    def test_feedDeleteRemovesJoins(self):
        """Deleting a feed deletes its joins; the pipes stay."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "news")
        pipe = yield self.newPipe(domain)
        join, _ = yield pipe.join(feed)
        joins = yield feed.listJoins()
        self.assertEqual(joins, [join])
        v = pipe.version
        yield feed.delete()
        joins = yield pipe.listJoins()
        self.assertEqual([j.isDefault for j in joins], [True])
        self.assertGreater(pipe.version, v)
        yield self.assertFailure(self.engine.lookup(join.hash), NoSuchResource)
        yield self.assertFailure(self.engine.lookup(feed.hash), NoSuchResource)
        yield self.assertFailure(domain.getFeed("news"), NoSuchResource)
        found = yield self.engine.lookup(pipe.hash)
        self.assertIs(found, pipe)
        # The name is free again, for another type too.
        other = yield self.feed(domain, "topic", "news")
        self.assertEqual(other.type, "topic")

    # -- joins --

    @inlineCallbacks
    def test_joins(self):
        """Identical joins are one (predicates compare by value); default joins are special."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "headers", "h")
        pipe = yield self.newPipe(domain)
        j1, created = yield pipe.join(feed, "*", {"a": "1", "b": "2"})
        self.assertTrue(created)
        j2, created = yield pipe.join(feed, "*", {"b": "2", "a": "1"})
        self.assertIs(j2, j1)
        self.assertFalse(created)
        j3, created = yield pipe.join(feed, "*", {"a": "1"})
        self.assertTrue(created)
        p1, created = yield pipe.join(feed, "*", {"a": "1"}, predicate=AddressMatches("x.*"))
        self.assertTrue(created)
        again, created = yield pipe.join(feed, "*", {"a": "1"}, predicate=AddressMatches("x.*"))
        self.assertIs(again, p1)
        self.assertFalse(created)
        p2, created = yield pipe.join(feed, "*", {"a": "1"}, predicate=AddressMatches("y.*"))
        self.assertTrue(created)
        joins = yield pipe.listJoins()
        self.assertTrue(joins[0].isDefault)
        self.assertEqual(joins[0].address, pipe.name)
        self.assertEqual(joins[1:], [j1, j3, p1, p2])
        self.assertEqual((j1.pipe, j1.feed, j1.headers, j1.predicate), (pipe, feed, {"a": "1", "b": "2"}, None))
        self.assertEqual((p1.predicate, p2.predicate), (AddressMatches("x.*"), AddressMatches("y.*")))
        yield self.assertFailure(joins[0].delete(), Forbidden)
        default = yield domain.getFeed(DEFAULT_FEED)
        yield self.assertFailure(pipe.join(default, "x"), Forbidden)
        topic = yield self.feed(domain, "topic", "t")
        yield self.assertFailure(pipe.join(topic, "a.b*"), InvalidArgument)
        yield self.assertFailure(pipe.join(feed, "*", {"x-match": "some"}), InvalidArgument)
        v = pipe.version
        yield j3.delete()
        self.assertGreater(pipe.version, v)
        yield self.assertFailure(self.engine.lookup(j3.hash), NoSuchResource)

    @inlineCallbacks
    def test_ondemandJoinsOnlyRotating(self):
        """An ondemand pipe joins rotator and service feeds only."""
        domain = yield self.newDomain()
        pipe = yield self.newPipe(domain, "ondemand")
        for type in ("fanout", "direct", "topic", "headers", "system"):
            feed = yield self.feed(domain, type, f"f-{type}")
            yield self.assertFailure(pipe.join(feed), Forbidden)
        for type in ("rotator", "service"):
            feed = yield self.feed(domain, type, f"f-{type}")
            join, created = yield pipe.join(feed)
            self.assertTrue(created)

    # -- routing --

    @inlineCallbacks
    def test_fanout(self):
        """A fanout feed gives every joined pipe every message, the same message object."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipes = []
        for i in range(3):
            pipe = yield self.newPipe(domain)
            yield pipe.join(feed, "ignored" if i else "*")
            pipes.append(pipe)
        message = Message(address="x", properties={"message_id": "1"}, headers={"k": "v"})
        delivered = yield feed.publish([message])
        self.assertEqual(delivered, 3)
        helds = []
        for pipe in pipes:
            [held] = yield self.held(pipe, 1)
            helds.append(held)
            self.assertEqual(held.message.address, "x")
            self.assertEqual(held.message.properties, {"message_id": "1"})
            self.assertIs(held.message.feed, feed)
            self.assertIs(held.pipe, pipe)
        self.assertEqual(len({h.hash for h in helds}), 3)

    @inlineCallbacks
    def test_direct(self):
        """A direct feed matches the literal address."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "direct", "d")
        a = yield self.newPipe(domain)
        b = yield self.newPipe(domain)
        yield a.join(feed, "red")
        yield a.join(feed, "sentinel")
        yield b.join(feed, "blue")
        yield b.join(feed, "sentinel")
        delivered = yield feed.publish([Message(address=x) for x in ("red", "blue", "red.x", "*", "green", "red")])
        self.assertEqual(delivered, 3)
        self.assertEqual((yield self.heldAfterSentinel(a, feed)), ["red", "red"])
        self.assertEqual((yield self.heldAfterSentinel(b, feed)), ["blue"])

    @inlineCallbacks
    def test_topic(self):
        """A topic feed follows AMQP's rules: * is one word, # zero or more."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "topic", "t")
        cases = {
            "rec.pets.*": ["rec.pets.cats", "rec.pets.dogs"],
            "rec.#": ["rec", "rec.pets", "rec.pets.cats", "rec.pets.dogs", "rec.pets.cats.big", "rec.arts"],
            "*.pets.#": ["rec.pets", "rec.pets.cats", "rec.pets.dogs", "rec.pets.cats.big", "x.pets"],
            "#.cats": ["rec.pets.cats", "cats"],
            "rec.*.cats": ["rec.pets.cats"],
            "rec.pets": ["rec.pets"],
        }
        sent = ["rec.pets.cats", "rec.pets.dogs", "rec", "rec.pets", "rec.pets.cats.big", "x.pets", "cats", "rec.arts", "news"]
        pipes = {}
        for pattern in cases:
            pipe = yield self.newPipe(domain)
            yield pipe.join(feed, pattern)
            yield pipe.join(feed, "sentinel")
            pipes[pattern] = pipe
        yield feed.publish([Message(address=a) for a in sent])
        for pattern, expected in cases.items():
            got = yield self.heldAfterSentinel(pipes[pattern], feed)
            self.assertEqual(got, [a for a in sent if a in expected], pattern)

    @inlineCallbacks
    def test_headers(self):
        """A headers feed wants every join header equal, or one with x-match any."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "headers", "h")
        every = yield self.newPipe(domain)
        anyOf = yield self.newPipe(domain)
        yield every.join(feed, "*", {"os": "linux", "arch": "arm"})
        yield anyOf.join(feed, "*", {"os": "linux", "arch": "arm", "x-match": "any"})
        for pipe in (every, anyOf):
            yield pipe.join(feed, "*", {"s": "1"})
        messages = [
            Message(address="both", headers={"os": "linux", "arch": "arm", "extra": "y"}),
            Message(address="os", headers={"os": "linux"}),
            Message(address="arch", headers={"arch": "arm", "os": "bsd"}),
            Message(address="none", headers={"os": "Linux"}),
            Message(address="empty"),
        ]
        yield feed.publish(messages + [Message(address="sentinel", headers={"s": "1"})])
        for pipe, expected in ((every, ["both"]), (anyOf, ["both", "os", "arch"])):
            held = yield self.held(pipe, len(expected) + 1)
            self.assertEqual(addresses(held), expected + ["sentinel"])

    @inlineCallbacks
    def test_predicate(self):
        """
        An address predicate is applied after the feed type's rules, to the
        whole address.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "topic", "t")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed, "a.*", predicate=AddressMatches(r"a\.[13]|b\.1|a\.sentinel"))
        names = ["a.1", "a.2", "a.3", "a.10", "xa.1", "b.1", "a.1\n"]
        yield feed.publish([Message(address=n) for n in names])
        got = yield self.heldAfterSentinel(pipe, feed, sentinel="a.sentinel")
        self.assertEqual(got, ["a.1", "a.3"])

    @inlineCallbacks
    def test_predicateValues(self):
        """
        A join takes None or an AddressMatches as its predicate, nothing
        else; a predicate read back from its serialised form is the same
        predicate (the same join).
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", "r")
        pipe = yield self.newPipe(domain)

        class Subclass(AddressMatches):
            pass

        for bad in (lambda m: True, "chat/.*", re.compile("chat/.*"), Subclass("chat/.*"), {"pattern": "chat/.*"}):
            yield self.assertFailure(pipe.join(feed, predicate=bad), InvalidArgument)
        joins = yield pipe.listJoins()
        self.assertEqual([j.isDefault for j in joins], [True])
        predicate = AddressMatches("chat/.*")
        join, created = yield pipe.join(feed, predicate=predicate)
        self.assertTrue(created)
        sent = json.loads(json.dumps(predicateToJSON(predicate)))
        same, created = yield pipe.join(feed, predicate=predicateFromJSON(sent))
        self.assertIs(same, join)
        self.assertFalse(created)

    @inlineCallbacks
    def test_publishOnce(self):
        """
        Publishing sets the message's feed on the object published; it may
        be published again to that feed, not to another one (and then none
        of the publish's messages is routed).
        """
        domain = yield self.newDomain()
        first = yield self.feed(domain, "fanout", "first")
        second = yield self.feed(domain, "fanout", "second")
        pipe = yield self.newPipe(domain)
        yield pipe.join(first)
        yield pipe.join(second)
        message = Message(address="m")
        self.assertIsNone(message.feed)
        yield first.publish([message])
        self.assertIs(message.feed, first)
        yield self.assertFailure(second.publish([Message(address="fresh"), message]), InvalidArgument)
        self.assertIs(message.feed, first)
        delivered = yield first.publish([message])
        self.assertEqual(delivered, 1)
        held = yield self.heldAfterSentinel(pipe, second)
        self.assertEqual(held, ["m", "m"])
        for h in (yield pipe.listMessages()):
            self.assertEqual(h.message.feed.hash, (first if h.message.address == "m" else second).hash)

    @inlineCallbacks
    def test_orderWithinPublish(self):
        """The messages of one publish arrive in order, numbered from 1."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "topic", "t")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed, "#")
        names = [f"m{i}" for i in range(self.PIPE_DEPTH)]
        yield feed.publish([Message(address=n) for n in names])
        held = yield self.held(pipe, len(names))
        self.assertEqual(addresses(held), names)
        self.assertEqual([h.sequence for h in held], list(range(1, len(names) + 1)))
        for older, newer in zip(held, held[1:]):
            self.assertEqual(older.next, newer.hash)
        self.assertEqual(held[-1].next, pipe.asynclet)

    @inlineCallbacks
    def test_onePipeOncePerPublish(self):
        """A pipe with several matching joins onto one feed gets the message once."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "topic", "t")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed, "a.*")
        yield pipe.join(feed, "#")
        yield pipe.join(feed, "a.b")
        delivered = yield feed.publish([Message(address="a.b")])
        self.assertEqual(delivered, 1)
        self.assertEqual((yield self.heldAfterSentinel(pipe, feed)), ["a.b"])

    @inlineCallbacks
    def test_rotatorRoundRobin(self):
        """A rotator feed gives each message to exactly one join, in turn."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", "r")
        pipes = []
        for i in range(3):
            pipe = yield self.newPipe(domain)
            yield pipe.join(feed)
            pipes.append(pipe)
        delivered = yield feed.publish([Message(address=f"m{i}") for i in range(6)])
        self.assertEqual(delivered, 6)
        got = []
        for pipe in pipes:
            held = yield self.held(pipe, 2)
            self.assertEqual(len(held), 2)
            got.extend(addresses(held))
        self.assertEqual(sorted(got), [f"m{i}" for i in range(6)])

    @inlineCallbacks
    def test_rotatorBacklog(self):
        """Messages with no join wait in the rotator feed and go, in order, to the first join."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", "r")
        delivered = yield feed.publish([Message(address=f"m{i}") for i in range(3)])
        self.assertEqual(delivered, 0)
        first = yield self.newPipe(domain)
        second = yield self.newPipe(domain)
        yield first.join(feed)
        held = yield self.held(first, 3)
        self.assertEqual(addresses(held), ["m0", "m1", "m2"])
        yield second.join(feed)
        held = yield second.listMessages()
        self.assertEqual(held, [])

    @inlineCallbacks
    def test_rotatorBacklogLimit(self):
        """The backlog keeps the newest messages up to its limit and counts the drops."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", "r")
        small = yield self.feed(domain, "rotator", "small", backlog=2)
        yield feed.publish([Message(address=f"m{i}") for i in range(self.FEED_BACKLOG + 2)])
        yield small.publish([Message(address=f"m{i}") for i in range(5)])
        self.assertEqual((feed.dropped, small.dropped), (2, 3))
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        held = yield self.held(pipe, self.FEED_BACKLOG)
        self.assertEqual(addresses(held), [f"m{i}" for i in range(2, self.FEED_BACKLOG + 2)])
        other = yield self.newPipe(domain)
        yield other.join(small)
        held = yield self.held(other, 2)
        self.assertEqual(addresses(held), ["m3", "m4"])

    @inlineCallbacks
    def test_rotatorPredicate(self):
        """A rotator gives a message only to a join whose predicate takes it; others wait for one."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator")
        chat = yield self.newPipe(domain, "stream")
        yield chat.join(feed, predicate=AddressMatches("chat/.*"))
        delivered = yield feed.publish([Message(address="chat/a"), Message(address="game/b"), Message(address="chat/c")])
        self.assertEqual(delivered, 2)
        held = yield self.held(chat, 2)
        self.assertEqual(addresses(held), ["chat/a", "chat/c"])
        game = yield self.newPipe(domain, "stream")
        yield game.join(feed, predicate=AddressMatches("game/.*"))
        held = yield self.held(game, 1)
        self.assertEqual(addresses(held), ["game/b"])

    @inlineCallbacks
    def test_serviceDeletesItself(self):
        """A service feed goes away when its last join goes."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "service", "svc")
        a = yield self.newPipe(domain)
        b = yield self.newPipe(domain)
        ja, _ = yield a.join(feed)
        jb, _ = yield b.join(feed)
        yield ja.delete()
        got = yield domain.getFeed("svc")
        self.assertIs(got, feed)
        yield b.delete()
        yield self.assertFailure(domain.getFeed("svc"), NoSuchResource)
        yield self.assertFailure(self.engine.lookup(feed.hash), NoSuchResource)
        yield self.assertFailure(self.engine.lookup(jb.hash), NoSuchResource)

    @inlineCallbacks
    def test_defaultFeedToPipe(self):
        """The default feed takes a message addressed to a pipe's name to that pipe."""
        domain = yield self.newDomain()
        default = yield domain.getFeed(DEFAULT_FEED)
        a = yield self.newPipe(domain)
        b = yield self.newPipe(domain)
        delivered = yield default.publish([Message(address=a.name), Message(address="nobody")])
        self.assertEqual(delivered, 1)
        [held] = yield self.held(a, 1)
        self.assertIs(held.message.feed, default)
        self.assertEqual(held.message.address, a.name)
        before = yield self.heldAfterSentinel(b, default, sentinel=b.name)
        self.assertEqual(before, [])

    @inlineCallbacks
    def test_serviceRequestResponse(self):
        """The seed's service scenario: request through the default feed, reply to reply_to."""
        domain = yield self.newDomain()
        default = yield domain.getFeed(DEFAULT_FEED)
        service = yield self.feed(domain, "service", "time")
        server = yield self.newPipe(domain)
        requestor = yield self.newPipe(domain)
        yield server.join(service)
        delivered = yield default.publish([Message(address="time", properties={"reply_to": requestor.name})])
        self.assertEqual(delivered, 1)
        [request] = yield self.held(server, 1)
        self.assertEqual(request.message.reply_to, requestor.name)
        yield default.publish([Message(address=request.message.reply_to, contents=(Content("text/plain", b"noon"),))])
        [response] = yield self.held(requestor, 1)
        self.assertEqual(response.message.contents[0].body, b"noon")
        # Straight to the service feed works too.
        yield service.publish([Message(address="time")])
        held = yield self.held(server, 2)
        self.assertIs(held[1].message.feed, service)

    # -- pipes --

    @inlineCallbacks
    def test_fifoRemoveOlder(self):
        """Removing a message removes it and every older one."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        yield feed.publish([Message(address=a) for a in "abcd"])
        held = yield self.held(pipe, 4)
        v = pipe.version
        removed = yield pipe.remove(held[2].hash)
        self.assertEqual(removed, 3)
        self.assertGreater(pipe.version, v)
        rest = yield pipe.listMessages()
        self.assertEqual(addresses(rest), ["d"])
        again = yield pipe.remove(held[1].hash)
        self.assertEqual(again, 0)
        for h in held[:3]:
            yield self.assertFailure(self.engine.lookup(h.hash), NoSuchResource)
            yield self.assertFailure(pipe.wait(h.hash), NoSuchResource)
        same = yield pipe.wait(held[3].hash)
        self.assertIs(same, held[3])

    @inlineCallbacks
    def test_pipeVersion(self):
        """A pipe's version grows when a message arrives or a join is added."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        v0 = pipe.version
        yield pipe.join(feed)
        v1 = pipe.version
        self.assertGreater(v1, v0)
        yield feed.publish([Message(address="a")])
        yield self.held(pipe, 1)
        self.assertGreater(pipe.version, v1)

    @inlineCallbacks
    def test_asyncletWait(self):
        """Waiting on the asynclet fires when the message arrives, with the asynclet's hash."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        slot = pipe.asynclet
        d = pipe.wait(slot)
        self.assertFalse(d.called)
        yield feed.publish([Message(address="a"), Message(address="b")])
        held = yield d
        self.assertEqual((held.hash, held.sequence, held.message.address), (slot, 1, "a"))
        self.assertNotEqual(pipe.asynclet, slot)
        second = yield pipe.wait(held.next)
        self.assertEqual(second.message.address, "b")
        self.assertEqual(second.next, pipe.asynclet)
        found = yield self.engine.lookup(slot)
        self.assertIs(found, held)
        yield self.assertFailure(pipe.wait("not-a-hash-of-this-pipe"), NoSuchResource)

    @inlineCallbacks
    def test_asyncletCancelLosesNothing(self):
        """A cancelled wait leaves the message that arrives next in the pipe."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        slot = pipe.asynclet
        d = pipe.wait()
        d.cancel()
        yield self.assertFailure(d, CancelledError)
        yield feed.publish([Message(address="a")])
        held = yield pipe.wait(slot)
        self.assertEqual(held.message.address, "a")
        listed = yield pipe.listMessages()
        self.assertEqual(listed, [held])

    @inlineCallbacks
    def test_pipeDeleteFailsWaits(self):
        """Deleting a pipe fails its waits and removes its joins and messages."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        join, _ = yield pipe.join(feed)
        yield feed.publish([Message(address="a")])
        [held] = yield self.held(pipe, 1)
        d = pipe.wait()
        yield pipe.delete()
        yield self.assertFailure(d, NoSuchResource)
        for h in (pipe.hash, join.hash, held.hash):
            yield self.assertFailure(self.engine.lookup(h), NoSuchResource)
        joins = yield feed.listJoins()
        self.assertEqual(joins, [])
        pipes = yield domain.listPipes()
        self.assertNotIn(pipe, pipes)
        yield pipe.delete()

    @inlineCallbacks
    def test_ondemandPull(self):
        """An ondemand pipe takes one message from its rotator feed each time someone waits."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", "jobs")
        pipe = yield self.newPipe(domain, "ondemand")
        yield pipe.join(feed)
        delivered = yield feed.publish([Message(address=f"job{i}") for i in range(3)])
        self.assertEqual(delivered, 0)
        self.assertEqual((yield pipe.listMessages()), [])
        first = yield pipe.wait()
        self.assertEqual(first.message.address, "job0")
        self.assertEqual(addresses((yield pipe.listMessages())), ["job0"])
        # Holding a message, it takes no other even with a waiter.
        d = pipe.wait(first.next)
        self.assertEqual(addresses((yield pipe.listMessages())), ["job0"])
        yield pipe.remove(first.hash)
        second = yield d
        self.assertEqual(second.message.address, "job1")
        yield pipe.remove(second.hash)
        # Not waiting, it is not ready: a fifo pipe joining now gets the rest.
        other = yield self.newPipe(domain)
        yield other.join(feed)
        held = yield self.held(other, 1)
        self.assertEqual(addresses(held), ["job2"])

    @inlineCallbacks
    def test_ondemandCancelledWait(self):
        """An ondemand pipe whose wait was cancelled pulls nothing more."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", "jobs")
        pipe = yield self.newPipe(domain, "ondemand")
        yield pipe.join(feed)
        d = pipe.wait()
        d.cancel()
        yield self.assertFailure(d, CancelledError)
        delivered = yield feed.publish([Message(address="job")])
        self.assertEqual(delivered, 0)
        other = yield self.newPipe(domain)
        yield other.join(feed)
        held = yield self.held(other, 1)
        self.assertEqual(addresses(held), ["job"])
        self.assertEqual((yield pipe.listMessages()), [])

    @inlineCallbacks
    def test_depthLimit(self):
        """A pipe past its depth drops its oldest messages and counts them."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        first = pipe.asynclet
        names = [f"m{i}" for i in range(self.PIPE_DEPTH + 3)]
        yield feed.publish([Message(address=n) for n in names])
        held = yield self.held(pipe, self.PIPE_DEPTH)
        self.assertEqual(addresses(held), names[3:])
        self.assertEqual(pipe.dropped, 3)
        yield self.assertFailure(self.engine.lookup(first), NoSuchResource)

    # -- contents --

    @inlineCallbacks
    def test_stagedContent(self):
        """A staged content is claimed once, and only on its own feed."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        other = yield self.feed(domain, "fanout", "g")
        body = Content("image/png", b"\x89PNG")
        staged = yield feed.stageContent(body)
        found = yield self.engine.lookup(staged.hash)
        self.assertEqual(found.content, body)
        yield self.assertFailure(other.claimContent(staged.hash), Forbidden)
        claimed = yield feed.claimContent(staged.hash)
        self.assertEqual(claimed, body)
        yield self.assertFailure(feed.claimContent(staged.hash), ContentGone)
        yield self.assertFailure(feed.claimContent("never-staged-here"), ContentGone)
        yield self.assertFailure(self.engine.lookup(staged.hash), NoSuchResource)

    @inlineCallbacks
    def test_heldContents(self):
        """A held message's contents resolve by hash until the message is removed."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        contents = (Content("text/plain", b"one"), Content("application/json", b"{}"))
        yield feed.publish([Message(address="a", contents=contents)])
        [held] = yield self.held(pipe, 1)
        self.assertEqual(len(held.contentHashes), 2)
        for h, content in zip(held.contentHashes, contents):
            found = yield self.engine.lookup(h)
            self.assertEqual(found.content, content)
            self.assertEqual(found.hash, h)
        yield pipe.remove(held.hash)
        for h in held.contentHashes:
            yield self.assertFailure(self.engine.lookup(h), NoSuchResource)

    @inlineCallbacks
    def test_deleteHeldContent(self):
        """
        Deleting a content of a held message takes it out of that held
        message only: the others stay, with their hashes.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        other = yield self.newPipe(domain)
        yield pipe.join(feed)
        yield other.join(feed)
        contents = tuple(Content("text/plain", b"%d" % i) for i in range(3))
        yield feed.publish([Message(address="a", headers={"h": "v"}, properties={"message_id": "m"}, contents=contents)])
        [held] = yield self.held(pipe, 1)
        hashes, version = held.contentHashes, held.version
        self.assertEqual(held.contents, contents)
        content = yield self.engine.lookup(hashes[1])
        self.assertIsNone((yield content.delete()))
        yield self.assertFailure(self.engine.lookup(hashes[1]), NoSuchResource)
        [again] = yield pipe.listMessages()
        self.assertIs(again, held)
        self.assertEqual(held.contents, (contents[0], contents[2]))
        self.assertEqual(held.contentHashes, (hashes[0], hashes[2]))
        self.assertGreater(held.version, version)
        self.assertEqual((held.message.headers, held.message.properties), ({"h": "v"}, {"message_id": "m"}))
        for h, body in ((hashes[0], contents[0]), (hashes[2], contents[2])):
            found = yield self.engine.lookup(h)
            self.assertEqual(found.content, body)
        # Already gone: not an error, and nothing else changes.
        yield content.delete()
        self.assertEqual(held.contentHashes, (hashes[0], hashes[2]))
        # The other pipe's copy keeps all three.
        [theirs] = yield self.held(other, 1)
        self.assertEqual(theirs.contents, contents)
        self.assertEqual(len(theirs.contentHashes), 3)
        # A content of a message removed meanwhile: nothing to do.
        last = yield self.engine.lookup(hashes[2])
        yield pipe.remove(held.hash)
        yield last.delete()

    @inlineCallbacks
    def test_deleteStagedContent(self):
        """A deleted staged content can't be found or claimed."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        staged = yield feed.stageContent(Content("text/plain", b"x"))
        self.assertIsNone((yield staged.delete()))
        yield self.assertFailure(self.engine.lookup(staged.hash), NoSuchResource)
        yield self.assertFailure(feed.claimContent(staged.hash), ContentGone)
        yield staged.delete()

    @inlineCallbacks
    def test_stageBounds(self):
        """
        A feed keeps a bounded number and size of staged contents that no
        message has claimed: beyond either bound staging fails with
        LimitReached, until some is claimed or deleted.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout", "f")
        other = yield self.feed(domain, "fanout", "g")
        small = Content("text/plain", b"x")
        staged = []
        for _ in range(self.STAGE_COUNT):
            staged.append((yield feed.stageContent(small)))
        yield self.assertFailure(feed.stageContent(small), LimitReached)
        # The bound is the feed's own.
        yield other.stageContent(small)
        # A claimed content, and a deleted one, free their place.
        yield feed.claimContent(staged[0].hash)
        yield feed.stageContent(small)
        yield staged[1].delete()
        yield feed.stageContent(small)
        yield self.assertFailure(feed.stageContent(small), LimitReached)
        # Bytes: up to STAGE_BYTES in all, not one more.
        sized = yield self.feed(domain, "fanout", "h")
        big = yield sized.stageContent(Content("application/octet-stream", b"b" * (self.STAGE_BYTES - 1)))
        yield self.assertFailure(sized.stageContent(Content("text/plain", b"bb")), LimitReached)
        yield self.assertFailure(other.stageContent(Content("text/plain", b"b" * (self.STAGE_BYTES + 1))), LimitReached)
        last = yield sized.stageContent(small)
        yield self.assertFailure(sized.stageContent(small), LimitReached)
        yield big.delete()
        yield sized.claimContent(last.hash)
        yield sized.stageContent(Content("text/plain", b"b" * self.STAGE_BYTES))

    # -- system feeds --

    @inlineCallbacks
    def test_systemFeed(self):
        """A system feed carries the domain's lifecycle events and refuses publishers."""
        domain = yield self.newDomain()
        system = yield self.feed(domain, "system", "events")
        yield self.assertFailure(system.publish([Message(address="x")]), Forbidden)
        watcher = yield self.newPipe(domain)
        yield watcher.join(system, "feed.*")
        yield watcher.join(system, "pipe.deleted")
        feed = yield self.feed(domain, "topic", "news")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed, "#")
        yield pipe.delete()
        yield feed.delete()
        held = yield self.held(watcher, 3)
        self.assertEqual(addresses(held), ["feed.created", "pipe.deleted", "feed.deleted"])
        self.assertEqual(held[0].message.headers["hash"], feed.hash)
        self.assertEqual(held[0].message.headers["name"], "news")
        self.assertEqual(held[1].message.headers["hash"], pipe.hash)
        self.assertEqual(held[1].message.headers["name"], pipe.name)
        self.assertIs(held[0].message.feed, system)

    @inlineCallbacks
    def test_systemFeedJoinEvents(self):
        """Creating and deleting a join is announced too, the pipe's default join included."""
        domain = yield self.newDomain()
        system = yield self.feed(domain, "system", "events")
        watcher = yield self.newPipe(domain)
        yield watcher.join(system, "join.#")
        feed = yield self.feed(domain, "fanout", "f")
        pipe = yield self.newPipe(domain)
        join, _ = yield pipe.join(feed)
        yield join.delete()
        held = yield watcher.listMessages()
        while "join.deleted" not in addresses(held):
            yield watcher.wait(held[-1].next if held else None)
            held = yield watcher.listMessages()
        [default] = yield pipe.listJoins()
        byHash = {}
        for h in held:
            byHash.setdefault(h.message.headers["hash"], []).append(h.message)
        self.assertEqual([m.address for m in byHash[join.hash]], ["join.created", "join.deleted"])
        self.assertEqual(byHash[join.hash][0].headers["pipe"], pipe.hash)
        self.assertEqual(byHash[join.hash][0].headers["feed"], feed.hash)
        self.assertEqual([m.address for m in byHash[default.hash]], ["join.created"])

    # -- the worker pool (WebRocket's backend events) --

    @inlineCallbacks
    def test_workerPool(self):
        """
        Stream pipes consumed with predicate joins on a private rotator feed
        share its messages, each to one worker; a worker's held messages
        are republished when it goes away and reach the others.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "rotator", backlog=100)
        workers = []
        for i in range(2):
            pipe = yield self.newPipe(domain, "stream")
            yield pipe.join(feed, predicate=AddressMatches("chat/.*"))
            workers.append(pipe)
        live, stuck = workers
        taken = Collector()
        handle = yield live.consume(taken)
        self.assertTrue(live.consumed)
        yield self.assertFailure(live.consume(Collector()), Conflict)
        # The stuck worker leaves what it gets held (a slow client).
        refused = Collector(result=False)
        yield stuck.consume(refused)
        names = [f"chat/m{i}" for i in range(4)]
        delivered = yield feed.publish([Message(address=n) for n in names] + [Message(address="game/x")])
        self.assertEqual(delivered, 4)
        yield refused.until(1)
        kept = yield stuck.listMessages()
        yield taken.until(4 - len(kept))
        self.assertEqual(len(refused.addresses), 1)
        self.assertEqual(sorted(taken.addresses + addresses(kept)), names)
        self.assertTrue(kept, "round-robin gave the stuck worker nothing")
        yield stuck.delete()
        yield feed.publish([h.message for h in kept])
        yield taken.until(4)
        self.assertEqual(sorted(taken.addresses), names)
        self.assertEqual((yield live.listMessages()), [])
        handle.stop()
        self.assertFalse(live.consumed)

    @inlineCallbacks
    def test_consumptionEnds(self):
        """
        A consumer's handle says when its consumption ends: False when it
        was stopped, True when the pipe was deleted under it.
        """
        domain = yield self.newDomain()
        stopped = yield self.newPipe(domain, "stream")
        handle = yield stopped.consume(Collector())
        self.assertFalse(handle.ended.called)
        handle.stop()
        self.assertFalse((yield handle.ended))
        deleted = yield self.newPipe(domain, "stream")
        handle = yield deleted.consume(Collector())
        yield deleted.delete()
        self.assertTrue((yield handle.ended))

    # -- listeners (WebRocket's browser subscriptions) --

    @inlineCallbacks
    def test_listenersTakeEveryMessage(self):
        """
        A fanout feed's listeners get every message published while they
        listen, in order, the same object for all, once the publish has
        routed; listener deliveries are not counted as pipe deliveries.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout")
        pipe = yield self.newPipe(domain)
        yield pipe.join(feed)
        first, second = Listened(), Listened()
        yield feed.publish([Message(address="before")])
        yield feed.listen(first)
        yield feed.listen(second)
        messages = [Message(address=f"m{i}") for i in range(3)]
        delivered = yield feed.publish(messages)
        self.assertEqual(delivered, 3)
        yield first.until(3)
        yield second.until(3)
        self.assertEqual(first.addresses, ["m0", "m1", "m2"])
        self.assertEqual(second.addresses, ["m0", "m1", "m2"])
        for mine, theirs in zip(first.messages, second.messages):
            self.assertIs(mine, theirs)
        self.assertEqual(addresses((yield pipe.listMessages())), ["before", "m0", "m1", "m2"])

    @inlineCallbacks
    def test_listenReadyWhenFired(self):
        """
        Once listen's Deferred has fired, the listener gets every message
        published after, even one published at once, in its callback.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout")
        listened = Listened()
        published = []

        def ready(handle):
            published.append(feed.publish([Message(address="first")]))
            return handle

        yield feed.listen(listened).addCallback(ready)
        yield published[0]
        yield listened.until(1)
        self.assertEqual(listened.addresses, ["first"])

    @inlineCallbacks
    def test_listenerStopped(self):
        """
        A stopped listener gets nothing more, even when another listener
        stops it while a message is being handed; its C{ended} fires False.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout")
        late = Listened()
        handles = {}

        def stopper(message):
            handles["late"].stop()

        yield feed.listen(stopper)
        handles["late"] = yield feed.listen(late)
        sentinel = Listened()
        yield feed.listen(sentinel)
        yield feed.publish([Message(address="a"), Message(address="b")])
        yield sentinel.until(2)
        self.assertEqual(late.addresses, [])
        self.assertFalse((yield handles["late"].ended))
        handles["late"].stop()  # twice is harmless

    @inlineCallbacks
    def test_listenerFeedDeleted(self):
        """
        Deleting the feed ends its listeners with True, after the messages
        routed before the deletion were handed.
        """
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout")
        listened = Listened()
        handle = yield feed.listen(listened)
        yield feed.publish([Message(address="last")])
        yield feed.delete()
        self.assertTrue((yield handle.ended))
        self.assertEqual(listened.addresses, ["last"])
        yield self.assertFailure(feed.listen(Listened()), NoSuchResource)

    @inlineCallbacks
    def test_listenerRaises(self):
        """A listener that raises is logged, keeps listening, and spoils nothing for the others."""
        domain = yield self.newDomain()
        feed = yield self.feed(domain, "fanout")

        def broken(message):
            raise ValueError("broken listener")

        yield feed.listen(broken)
        listened = Listened()
        yield feed.listen(listened)
        yield feed.publish([Message(address="a"), Message(address="b")])
        yield listened.until(2)
        self.assertEqual(listened.addresses, ["a", "b"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)

    @inlineCallbacks
    def test_listenOnlyFanout(self):
        """Only fanout feeds take listeners, and only callables listen."""
        domain = yield self.newDomain()
        for type in ("topic", "direct", "headers", "rotator", "service"):
            feed = yield self.feed(domain, type)
            yield self.assertFailure(feed.listen(Listened()), Forbidden)
        fanout = yield self.feed(domain, "fanout")
        yield self.assertFailure(fanout.listen("not callable"), InvalidArgument)


class Collector:
    """A pipe consumer that records addresses and answers C{result}."""

    def __init__(self, result=None):
        self.addresses = []
        self.result = result
        self._waits = []

    def __call__(self, held):
        self.addresses.append(held.message.address)
        waits, self._waits = self._waits, []
        for count, d in waits:
            if len(self.addresses) >= count:
                d.callback(None)
            else:
                self._waits.append((count, d))
        return self.result

    def until(self, count):
        """@return: a Deferred firing once C{count} messages were handed."""
        d = Deferred()
        if len(self.addresses) >= count:
            d.callback(None)
        else:
            self._waits.append((count, d))
        return d


class MemoryEngineContractTests(EngineContractTests, TestCase):
    """The embedded engine keeps the contract."""

    def makeEngine(self):
        clock = Clock()
        engine = MemoryEngine(
            clock,
            pipeDepth=self.PIPE_DEPTH,
            feedBacklog=self.FEED_BACKLOG,
            stageCount=self.STAGE_COUNT,
            stageBytes=self.STAGE_BYTES,
        )
        return engine, clock


class Listened(Collector):
    """A feed listener that records the messages and their addresses."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def __call__(self, message):
        self.messages.append(message)
        return Collector.__call__(self, _Held(message))


class _Held:
    """What a L{Collector} reads of a held message."""

    def __init__(self, message):
        self.message = message
