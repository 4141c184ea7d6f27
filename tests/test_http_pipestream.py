"""
Tests for L{rocketd.http.pipestream}: the flow-controlled consumer of a
stream pipe, on the embedded engine and a L{Clock}.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rocketd.engine.memory import MemoryEngine
from rocketd.engine.message import Message
from rocketd.errors import Conflict
from rocketd.http.pipestream import PipeStream


class Gate:
    """Flow control with the shape of an SSE stream's (C{paused}, C{whenWritable})."""

    def __init__(self):
        self.paused = False
        self.waiting = []

    def whenWritable(self):
        if not self.paused:
            return succeed(True)
        d = Deferred()
        self.waiting.append(d)
        return d

    def open(self, writable=True):
        self.paused = False
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(writable)


class PipeStreamTests(TestCase):
    def setUp(self):
        self.engine = MemoryEngine(Clock())
        domain = self.successResultOf(self.engine.createDomain("moon"))
        self.feed, _ = self.successResultOf(domain.createFeed("news", "fanout"))
        self.pipe = self.successResultOf(domain.createPipe("stream"))
        self.successResultOf(self.pipe.join(self.feed))
        self.written = []
        self.accept = True

    def publish(self, *addresses):
        self.successResultOf(self.feed.publish([Message(address=a) for a in addresses]))

    def send(self, data):
        if not self.accept:
            return False
        self.written.append(data)

    def held(self):
        return [h.message.address for h in self.successResultOf(self.pipe.listMessages())]

    def stream(self, **kwargs):
        return PipeStream(self.pipe, lambda held: held.message.address.encode("ascii"), self.send, **kwargs)

    def test_heldBeforeTheHead(self):
        """What the pipe holds goes out after the head, in order; then what arrives."""
        self.publish("a", "b")
        order = []
        stream = self.stream(begin=lambda: order.append("head"))
        self.assertIs(self.successResultOf(stream.start()), stream)
        self.assertEqual((order, self.written, self.held()), (["head"], [b"a", b"b"], []))
        self.publish("c")
        self.assertEqual(self.written, [b"a", b"b", b"c"])
        self.assertEqual(stream.written, 3)

    def test_gate(self):
        """
        While the gate is paused, messages stay held, in order, and the
        stream waits once; when it opens, the pipe resumes.
        """
        gate = Gate()
        self.successResultOf(self.stream(gate=gate).start())
        gate.paused = True
        self.publish("a", "b")
        self.publish("c")
        self.assertEqual((self.written, self.held()), ([], ["a", "b", "c"]))
        self.assertEqual(len(gate.waiting), 1)
        gate.open()
        self.assertEqual((self.written, self.held()), ([b"a", b"b", b"c"], []))

    def test_gateEnds(self):
        """A gate that ends instead of opening stops the stream: what waits stays held."""
        gate = Gate()
        self.successResultOf(self.stream(gate=gate).start())
        gate.paused = True
        self.publish("a")
        gate.open(writable=False)
        self.publish("b")
        self.assertEqual((self.written, self.held()), ([], ["a", "b"]))
        self.assertFalse(self.pipe.consumed)

    def test_sendRefuses(self):
        """A send answering False (the response is not open) leaves the message held."""
        self.successResultOf(self.stream().start())
        self.accept = False
        self.publish("a")
        self.assertEqual((self.written, self.held()), ([], ["a"]))

    def test_producer(self):
        """As the request's push producer, pausing holds messages and resuming lets them go."""
        request = Request()
        stream = self.stream()
        self.successResultOf(stream.start(producerFor=request))
        self.assertIs(request.producer, stream)
        stream.pauseProducing()
        self.publish("a")
        self.assertEqual(self.held(), ["a"])
        stream.resumeProducing()
        self.assertEqual((self.written, self.held()), ([b"a"], []))
        stream.stopProducing()
        self.assertFalse(self.pipe.consumed)

    def test_clientGone(self):
        """When the response is over, the stream detaches; the pipe keeps what comes."""
        gone = Deferred()
        ended = []
        self.successResultOf(self.stream(end=lambda: ended.append(True)).start(gone))
        gone.callback(None)
        self.publish("a")
        self.assertEqual((self.written, self.held(), ended), ([], ["a"], []))

    def test_pipeDeleted(self):
        """Deleting the pipe ends the response, once."""
        ended = []
        self.successResultOf(self.stream(end=lambda: ended.append(True)).start())
        self.successResultOf(self.pipe.delete())
        self.assertEqual(ended, [True])

    def test_oneConsumer(self):
        """A pipe that already has a consumer: the start fails, nothing is written."""
        self.successResultOf(self.stream().start())
        begun = []
        self.failureResultOf(self.stream(begin=lambda: begun.append(True)).start(), Conflict)
        self.assertEqual(begun, [])


class Request:
    producer = None

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer
