"""
The RabbitMQ engine's parts that need no broker: the connection's backoff
and availability (on a Clock, with a fake connector), and the message
mapping and its sanitising.
"""

from types import SimpleNamespace

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rocketd.engine.message import Content, Message
from rocketd.engine.rabbitmq import _amqp
from rocketd.engine.rabbitmq._mapping import fromAMQP, toAMQP
from rocketd.errors import EngineUnavailable, InvalidArgument


class FakeConnection:
    def __init__(self):
        self.closed = Deferred()
        self.is_closed = False
        self.channels = 0

    def channel(self):
        self.channels += 1
        return succeed("channel")

    def close(self):
        self.is_closed = True
        d, self.closed = self.closed, None
        d.callback(None)

    def drop(self):
        self.is_closed = True
        self.closed.callback(Exception("connection reset"))


class Connector:
    """Answers connection attempts from a script: an exception fails one, None succeeds."""

    def __init__(self, *script):
        self.script = list(script)
        self.made = []

    def __call__(self, reactor, url, heartbeat):
        outcome = self.script.pop(0)
        if outcome is not None:
            return fail(outcome)
        connection = FakeConnection()
        self.made.append(connection)
        return succeed(connection)


class BackoffTests(TestCase):
    def test_doublesToTheCapWithJitter(self):
        """0.5 s doubling to 30 s, spread over +-25%."""
        self.assertEqual([_amqp.backoff(n, lambda: 0.5) for n in (1, 2, 3, 7, 8, 20)], [0.5, 1.0, 2.0, 30.0, 30.0, 30.0])
        self.assertEqual(_amqp.backoff(1, lambda: 0.0), 0.375)
        self.assertEqual(_amqp.backoff(20, lambda: 1.0), 37.5)

    def test_parameters(self):
        """The URI names the broker; other schemes and hostless URIs are refused."""
        params = _amqp.parameters("amqp://u:p@broker:5673/v%2Fh", 7)
        self.assertEqual((params.host, params.port, params.virtual_host, params.heartbeat), ("broker", 5673, "v/h", 7))
        for bad in ("http://x/", "amqp:///"):
            self.assertRaises(ValueError, _amqp.parameters, bad, 10)


class BrokerTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.lost = []

    def broker(self, connector, onReady=None):
        return _amqp.Broker(self.clock, "amqp://h/", 10, onReady=onReady, onLost=lambda: self.lost.append(1),
                            connect=connector, random=lambda: 0.5)

    def test_unavailableThenReconnects(self):
        """While away, channel() fails EngineUnavailable; retries back off 0.5, 1, 2 s."""
        connector = Connector(ConnectionRefusedError(), ConnectionRefusedError(), ConnectionRefusedError(), None)
        broker = self.broker(connector)
        started = broker.start()
        self.assertTrue(started.called)
        self.assertFalse(broker.up)
        error = self.failureResultOf(broker.channel(), EngineUnavailable)
        self.assertGreaterEqual(error.value.retryAfter, 1)
        self.clock.advance(0.5)
        self.clock.advance(1.0)
        self.assertFalse(broker.up)
        self.clock.advance(1.9)
        self.assertFalse(broker.up)
        self.clock.advance(0.1)
        self.assertTrue(broker.up)
        self.assertEqual(self.successResultOf(broker.channel()), "channel")

    def test_lostConnection(self):
        """A lost connection calls onLost, fails operations, and reconnects after the backoff."""
        ready = []
        connector = Connector(None, None)
        broker = self.broker(connector, onReady=ready.append)
        broker.start()
        self.assertTrue(broker.up)
        connector.made[0].drop()
        self.assertEqual(self.lost, [1])
        self.assertFalse(broker.up)
        self.failureResultOf(broker.channel(), EngineUnavailable)
        self.clock.advance(0.5)
        self.assertTrue(broker.up)
        self.assertEqual(ready, connector.made)

    def test_stop(self):
        """Stopping closes the connection and stops retrying."""
        connector = Connector(ConnectionRefusedError())
        broker = self.broker(connector)
        broker.start()
        self.successResultOf(broker.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connector = Connector(None)
        broker = self.broker(connector)
        broker.start()
        self.successResultOf(broker.stop())
        self.assertTrue(connector.made[0].is_closed)
        self.assertEqual(self.lost, [])


def roundTrip(message, feed=None):
    key, props, body = toAMQP(message, "id-1")
    return fromAMQP(key, SimpleNamespace(**props), body, feed)


class MappingTests(TestCase):
    def test_roundTrip(self):
        """What rocketd publishes reads back as it was, feed set at construction."""
        message = Message(
            address="a.b",
            properties={"reply_to": "r", "message_id": "m", "priority": "5", "expiration": "1000",
                        "timestamp": "1700000000", "user_id": "someone", "sender_id": "s"},
            headers={"k": "v", "CC": "other", "BCC": "hidden"},
            contents=(Content("text/plain", b"hello"),),
        )
        feed = object()
        back = roundTrip(message, feed)
        self.assertEqual((back.address, back.properties, back.headers, back.contents),
                         (message.address, message.properties, message.headers, message.contents))
        self.assertIs(back.feed, feed)

    def test_contents(self):
        """Zero or several contents travel as one body with their parts listed."""
        for contents in ((), (Content("a/b", b"12"), Content("c/d", b""), Content("e/f", b"345"))):
            self.assertEqual(roundTrip(Message(address="x", contents=contents)).contents, contents)

    def test_sanitised(self):
        """What would close an AMQP channel goes to headers, never to the AMQP fields."""
        message = Message(address="x", properties={"expiration": "-5", "priority": "12", "delivery_mode": "3",
                                                   "timestamp": "soon", "user_id": "guest"},
                          headers={"CC": "q1"})
        key, props, body = toAMQP(message, "id")
        self.assertEqual({k for k in props if k != "headers"}, {"delivery_mode"})
        self.assertEqual(props["delivery_mode"], 2)
        self.assertNotIn("CC", props["headers"])
        self.assertEqual(roundTrip(message).properties, message.properties)

    def test_defaultDeliveryModeInvisible(self):
        """Messages are persistent unless told; the default does not show as a property."""
        key, props, body = toAMQP(Message(address="x"), "id")
        self.assertEqual(props["delivery_mode"], 2)
        self.assertEqual(roundTrip(Message(address="x")).properties, {})
        self.assertEqual(roundTrip(Message(address="x", properties={"delivery_mode": "1"})).properties,
                         {"delivery_mode": "1"})

    def test_refused(self):
        """Oversized shortstrs and properties, and rocketd's reserved names, are InvalidArgument."""
        for message in (
            Message(address="a" * 256),
            Message(address="x", properties={"reply_to": "r" * 256}),
            Message(address="x", headers={"h" * 256: "v"}),
            Message(address="x", headers={"big": "v" * 70000}),
            Message(address="x", headers={"x-rocketd-feed": "f"}),
        ):
            self.assertRaises(InvalidArgument, toAMQP, message, "id")

    def test_foreignMessage(self):
        """A peer's message: broker headers dropped, values stringified, content typed."""
        props = SimpleNamespace(content_type=None, headers={"n": 5, "b": b"x", "x-death": [{}], "x-delivery-count": 1},
                                delivery_mode=2, timestamp=17, priority=None, reply_to="amq.gen-1")
        message = fromAMQP("k", props, b"raw")
        self.assertEqual(message.headers, {"n": "5", "b": "x"})
        self.assertEqual(message.properties, {"delivery_mode": "2", "timestamp": "17", "reply_to": "amq.gen-1"})
        self.assertEqual(message.contents, (Content("application/octet-stream", b"raw"),))
