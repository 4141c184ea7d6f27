"""
AMQP interoperability of the RabbitMQ engine, with pika (on the reactor) as
the AMQP peer: a peer's message reaches a RestMS pipe as RestMS describes
it; a RestMS publish reaches a peer's queue bound to the feed's exchange; a
peer answers a RestMS requestor through the default exchange and
C{reply_to}. Skipped, with the reason, without a broker.
"""

import uuid

import pika
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from rocketd.engine.message import Content, Message
from rocketd.engine.rabbitmq import _amqp
from tests import test_engine_rabbitmq as base


class InteropTests(base.BrokerVhost, TestCase):
    timeout = 30
    _wait = base.RabbitMQEngineContractTests._wait

    @inlineCallbacks
    def setUp(self):
        from rocketd.engine.rabbitmq import RabbitMQEngine

        url = self.brokerURL()
        self.engine = RabbitMQEngine(reactor, url, heartbeat=10)
        self.addCleanup(self.engine.stop)
        yield self.engine.start()
        self.peer = yield _amqp.tcpConnect(reactor, url, 10)
        self.addCleanup(self.peer.close)
        self.channel = yield self.peer.channel()
        self.domain = yield self.engine.getDomain("default")

    @inlineCallbacks
    def heldOne(self, pipe):
        held = yield pipe.listMessages()
        if not held:
            yield pipe.wait()
            held = yield pipe.listMessages()
        return held

    @inlineCallbacks
    def test_peerToPipe(self):
        """A peer's message (properties, headers, body, content type) as a RestMS pipe holds it."""
        name = f"news-{uuid.uuid4().hex[:8]}"
        feed, _ = yield self.domain.createFeed(name, "topic")
        pipe = yield self.domain.createPipe()
        yield pipe.join(feed, "#")
        properties = pika.BasicProperties(
            content_type="text/plain", message_id="m1", correlation_id="c1", reply_to="amq.gen-x",
            priority=5, timestamp=1700000000, headers={"k": "v", "n": 5, "x-death": [{"q": "x"}]},
        )
        yield self.channel.basic_publish(name, "rec.pets.cats", b"Cats!", properties)
        [held] = yield self.heldOne(pipe)
        message = held.message
        self.assertEqual(message.address, "rec.pets.cats")
        self.assertEqual(message.properties, {"message_id": "m1", "correlation_id": "c1", "reply_to": "amq.gen-x",
                                              "priority": "5", "timestamp": "1700000000"})
        self.assertEqual(message.headers, {"k": "v", "n": "5"})
        self.assertEqual(message.contents, (Content("text/plain", b"Cats!"),))
        self.assertIs(message.feed, feed)

    @inlineCallbacks
    def test_pipeToPeer(self):
        """A RestMS publish reaches a peer's queue bound to the feed's exchange, with its properties."""
        name = f"news-{uuid.uuid4().hex[:8]}"
        feed, _ = yield self.domain.createFeed(name, "fanout")
        frame = yield self.channel.queue_declare("", exclusive=True)
        queue = frame.method.queue
        yield self.channel.queue_bind(queue, name)
        consumer, _ = yield self.channel.basic_consume(queue, auto_ack=True)
        yield feed.publish([Message(address="a.b", properties={"message_id": "m2", "reply_to": "r", "user_id": "x"},
                                    headers={"h": "v", "CC": "other"}, contents=(Content("text/html", b"<p/>"),))])
        got = yield consumer.get()
        self.assertEqual(got.method.routing_key, "a.b")
        self.assertEqual((got.properties.message_id, got.properties.reply_to, got.properties.content_type),
                         ("m2", "r", "text/html"))
        self.assertIsNone(got.properties.user_id)
        self.assertEqual(got.properties.headers["h"], "v")
        self.assertNotIn("CC", got.properties.headers)
        self.assertEqual(got.body, b"<p/>")

    @inlineCallbacks
    def test_replyThroughDefaultExchange(self):
        """A peer answers a RestMS requestor by publishing to the default exchange with its reply_to."""
        requestor = yield self.domain.createPipe()
        properties = pika.BasicProperties(content_type="text/plain", correlation_id="q1")
        yield self.channel.basic_publish("", requestor.name, b"12:00", properties)
        [held] = yield self.heldOne(requestor)
        self.assertEqual(held.message.contents, (Content("text/plain", b"12:00"),))
        self.assertEqual(held.message.properties, {"correlation_id": "q1"})
        self.assertEqual(held.message.address, requestor.name)
