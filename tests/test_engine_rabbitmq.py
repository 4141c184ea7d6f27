"""
The engine contract on the RabbitMQ engine, against the machine's broker
(127.0.0.1:5672, guest/guest): each test class gets a broker vhost of its
own, made with C{rabbitmqctl} and deleted after. Skipped, with the reason,
when the broker or C{rabbitmqctl} is not there.

The contract tests of what the engine does not do yet skip with the reason
"not yet on the RabbitMQ engine: <feature>".
"""

import atexit
import shutil
import socket
import subprocess
import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from rocketd.engine.message import Content, Message
from rocketd.engine.predicates import AddressMatches
from rocketd.errors import EngineUnavailable, InvalidArgument

from tests.test_engine_contract import EngineContractTests

BROKER = ("127.0.0.1", 5672)


def brokerMissing():
    """@return: why the broker tests cannot run, or None."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed (the tests make a broker vhost with it)"
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError as e:
        return f"no AMQP broker on {BROKER[0]}:{BROKER[1]} ({e})"
    return None


def rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=60, capture_output=True)


class BrokerVhost:
    """
    The test module's broker vhost: made the first time a test needs it,
    deleted when the test process exits (trial and pytest both run
    C{setUp}, not both C{setUpClass}).
    """

    _made = {}

    def brokerURL(self):
        missing = brokerMissing()
        if missing is not None:
            raise SkipTest(missing)
        module = type(self).__module__
        vhost = self._made.get(module)
        if vhost is None:
            vhost = self._made[module] = f"rocketd-test-{uuid.uuid4().hex[:12]}"
            rabbitmqctl("add_vhost", vhost)
            atexit.register(rabbitmqctl, "delete_vhost", vhost)
            rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@{BROKER[0]}:{BROKER[1]}/{vhost}"


NOT_YET = "not yet on the RabbitMQ engine: "
#: The contract tests that need what is not built yet, with what it is.
SKIPS: dict = {}


class RabbitMQEngineContractTests(BrokerVhost, EngineContractTests, TestCase):
    """The RabbitMQ engine keeps the contract (what of it is built)."""

    timeout = 20

    def makeEngine(self):
        from rocketd.engine.rabbitmq import RabbitMQEngine

        engine = RabbitMQEngine(reactor, self.brokerURL(), heartbeat=10, pipeDepth=self.PIPE_DEPTH,
                                feedBacklog=self.FEED_BACKLOG, stageCount=self.STAGE_COUNT,
                                stageBytes=self.STAGE_BYTES)
        return engine, reactor

    def setUp(self):
        # The contract's setUp makes the engine and waits for its start().
        d = EngineContractTests.setUp(self)

        def started(_):
            if not self.engine.up:
                self.fail("The engine did not connect to the broker")

        return d.addCallback(started)

    def _wait(self, d, running=[]):
        """
        Under pytest, once an integration test has started pytest-twisted's
        reactor (in a greenlet), wait by switching to that reactor: trial's
        own wait would try to run the running reactor.
        """
        from twisted.internet import reactor as running_reactor

        if running_reactor.running:
            import pytest_twisted

            try:
                pytest_twisted.blockon(d)
            except BaseException:
                pass  # the test's Deferred reports its own failure
            return
        return TestCase._wait(self, d)


def _skipped(name, feature):
    def test(self):
        pass

    test.__name__ = name
    test.skip = NOT_YET + feature
    return test


for _name, _feature in SKIPS.items():
    setattr(RabbitMQEngineContractTests, _name, _skipped(_name, _feature))


class RabbitMQEngineTests(BrokerVhost, TestCase):
    """What the contract suite does not check: serialisable predicates, a lost connection, AMQP peers."""

    timeout = 30
    _wait = RabbitMQEngineContractTests._wait

    def setUp(self):
        from rocketd.engine.rabbitmq import RabbitMQEngine

        self.engine = RabbitMQEngine(reactor, self.brokerURL(), heartbeat=10, pipeDepth=100)
        self.addCleanup(self.engine.stop)
        return self.engine.start()

    @inlineCallbacks
    def until(self, condition, seconds=15):
        """Poll C{condition()} every 50 ms until it holds; fail after C{seconds}."""
        deadline = reactor.seconds() + seconds
        while not condition():
            if reactor.seconds() > deadline:
                self.fail(f"not true within {seconds} s")
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def newDomain(self):
        domain = yield self.engine.createDomain(f"t-{uuid.uuid4().hex}")
        return domain

    @inlineCallbacks
    def test_patternPredicate(self):
        """An AddressMatches filters by a full match of the address; a callable is refused."""
        domain = yield self.newDomain()
        feed, _ = yield domain.createFeed("f", "fanout")
        pipe = yield domain.createPipe()
        join, created = yield pipe.join(feed, predicate=AddressMatches(r"chat/.*"))
        same, again = yield pipe.join(feed, predicate=AddressMatches(r"chat/.*"))
        self.assertEqual((created, again, same), (True, False, join))
        yield self.assertFailure(pipe.join(feed, predicate=lambda m: True), InvalidArgument)
        yield feed.publish([Message(address=a) for a in ("chat/a", "game/b", "xchat/c", "chat/d")])
        yield pipe.join(feed, predicate=AddressMatches("end"))
        yield feed.publish([Message(address="end")])
        held = yield pipe.listMessages()
        while [h.message.address for h in held][-1:] != ["end"]:
            yield pipe.wait(held[-1].next if held else None)
            held = yield pipe.listMessages()
        self.assertEqual([h.message.address for h in held], ["chat/a", "chat/d", "end"])

    @inlineCallbacks
    def test_connectionLost(self):
        """
        While the connection is away operations fail EngineUnavailable; the
        engine reconnects by itself and the held messages are still there.
        """
        domain = yield self.newDomain()
        feed, _ = yield domain.createFeed("f", "fanout")
        pipe = yield domain.createPipe()
        yield pipe.join(feed)
        yield feed.publish([Message(address=a, contents=(Content("text/plain", a.encode()),)) for a in "abc"])
        held = yield pipe.listMessages()
        while len(held) < 3:
            yield pipe.wait(held[-1].next if held else None)
            held = yield pipe.listMessages()
        rabbitmqctl("close_all_connections", "-p", self._made[type(self).__module__], "test")
        yield self.until(lambda: not self.engine.up)
        yield self.assertFailure(self.engine.listDomains(), EngineUnavailable)
        yield self.until(lambda: self.engine.up)
        self.assertIs((yield self.engine.getDomain(domain.name)), domain)
        again = yield pipe.listMessages()
        self.assertEqual([(h.message.address, h.message.contents[0].body) for h in again],
                         [("a", b"a"), ("b", b"b"), ("c", b"c")])
        removed = yield pipe.remove(again[1].hash)
        self.assertEqual(removed, 2)

    @inlineCallbacks
    def test_listenersShareOneConsumer(self):
        """100 listeners on two fanout feeds cost the node one broker consumer, and each gets each message."""
        domain = yield self.newDomain()
        feeds = []
        for name in ("a", "b"):
            feed, _ = yield domain.createFeed(name, "fanout")
            feeds.append(feed)
        got = []
        for i in range(100):
            yield feeds[i % 2].listen(got.append)
        vhost = self._made[type(self).__module__]
        out = subprocess.run(["rabbitmqctl", "-q", "list_consumers", "-p", vhost, "queue_name"], check=True,
                             timeout=60, capture_output=True, text=True).stdout
        nodeQueues = [line for line in out.splitlines() if line.startswith("rocketd:node:")]
        self.assertEqual(len(nodeQueues), 1, out)
        yield feeds[0].publish([Message(address="x")])
        yield self.until(lambda: len(got) >= 50)
        self.assertEqual(len({id(m) for m in got}), 1)
