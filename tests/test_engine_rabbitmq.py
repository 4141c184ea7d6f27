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
from twisted.trial.unittest import SkipTest, TestCase

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
SKIPS = {
    "test_joins": "callable predicates (the contract's serialisable predicate, issue 12 point 1)",
    "test_predicate": "callable predicates (the contract's serialisable predicate, issue 12 point 1)",
    "test_rotatorPredicate": "callable predicates (the contract's serialisable predicate, issue 12 point 1)",
    "test_workerPool": "callable predicates (the contract's serialisable predicate, issue 12 point 1)",
}


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
        EngineContractTests.setUp(self)
        d = self.engine.start()

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
