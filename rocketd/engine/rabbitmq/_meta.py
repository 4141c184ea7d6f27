"""
The metadata log: every change to domains, feeds, pipes and joins is an
event appended to the stream C{rocketd:meta}; every node applies the events
in offset order to its in-memory replica (design section 3).

A write appends its event, waits for it to come back through the stream,
and answers from the state it left: the log's order settles races, and a
node reads its own writes. L{MetaLog} is the transport; the replica's
C{apply} is the engine's.
"""

from __future__ import annotations

import json
import uuid
from typing import Callable, Dict, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from rocketd.engine.rabbitmq import _amqp

#: The stream every node appends to and reads.
STREAM = "rocketd:meta"


class MetaLog:
    """
    One node's end of the metadata stream.

    @ivar offset: the offset of the next event to apply.
    """

    log = Logger()

    def __init__(self, apply: Callable[[dict], None]):
        self._apply = apply
        self.node = uuid.uuid4().hex
        self._counter = 0
        self.offset: Optional[int] = None
        self._pending: Dict[str, Deferred] = {}
        self._publisher = None
        self._channel = None

    @inlineCallbacks
    def attach(self, connection, publisher):
        """
        On a new connection: declare the stream, read it from where this
        node stopped (the start, the first time), and fire once every event
        appended before is applied.
        """
        self._publisher = publisher
        channel = self._channel = yield connection.channel()
        yield channel.queue_declare(STREAM, durable=True, arguments={"x-queue-type": "stream"})
        yield channel.basic_qos(prefetch_count=1000)
        start = "first" if self.offset is None else self.offset
        queue, _ = yield channel.basic_consume(STREAM, arguments={"x-stream-offset": start})
        _amqp.drain(queue, self._received)
        yield self.append({"op": "node.attached"})

    def detach(self, error):
        """The connection is gone: pending appends fail with C{error}."""
        pending, self._pending = self._pending, {}
        self._channel = self._publisher = None
        for d in pending.values():
            d.errback(error)

    def _received(self, delivery):
        headers = delivery.properties.headers or {}
        offset = headers.get("x-stream-offset")
        if self._channel is not None:
            self._channel.basic_ack(delivery.method.delivery_tag)
        if offset is not None:
            if self.offset is not None and offset < self.offset:
                return  # already applied (a stream resumes at a chunk boundary)
            self.offset = offset + 1
        try:
            event = json.loads(delivery.body)
        except ValueError:
            self.log.warn("Skipped a metadata event that is not JSON at offset {offset}", offset=offset)
            return
        try:
            self._apply(event)
        except Exception:
            self.log.failure("Applying the metadata event {event!r} failed", event=event)
        d = self._pending.pop(event.get("id"), None)
        if d is not None:
            d.callback(event)

    def append(self, event: dict) -> Deferred:
        """
        Append an event (a JSON object with C{op}); fire with it once this
        node has applied it.
        """
        if self._publisher is None:
            return _amqp.unavailable()
        self._counter += 1
        event = dict(event, id=f"{self.node}.{self._counter}")
        d = self._pending[event["id"]] = Deferred()
        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        published = self._publisher.basic_publish("", STREAM, body, _amqp.BasicProperties(delivery_mode=2))

        def failed(failure):
            if self._pending.pop(event["id"], None) is d:
                d.errback(failure)

        published.addErrback(failed)
        return d
