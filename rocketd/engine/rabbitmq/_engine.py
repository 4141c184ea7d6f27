"""
L{RabbitMQEngine}: the replica of the metadata log, the operations, and
the AMQP objects they make (one node on one broker).

A write appends its event to the metadata log, waits for this node to apply
it, then makes the AMQP objects (exchange, queue, binding) and answers from
the replica. A pipe's owner (this node, on one broker) consumes its queue
on a channel of its own without acknowledging: the unacknowledged
deliveries are the held messages; DELETE acknowledges them. A listing
first sends a marker through the pipe's queue and waits for it, so that it
sees every message confirmed before it (read-your-writes).
"""

from __future__ import annotations

import re
import uuid
import weakref
from typing import Dict, Optional

from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from rocketd.engine._hashes import HashSource
from rocketd.engine._joins import checkJoinRequest
from rocketd.engine._topic import BadPattern
from rocketd.engine.message import Content, Message
from rocketd.engine.rabbitmq import _amqp
from rocketd.engine.rabbitmq._mapping import ADDRESS, FEED, MESSAGE_ID, fromAMQP, toAMQP
from rocketd.engine.rabbitmq._meta import MetaLog
from rocketd.engine.rabbitmq._resources import (
    EXCHANGE_TYPES,
    ROTATING,
    Asynclet,
    Consumption,
    Domain,
    Feed,
    HeldContent,
    HeldMessage,
    Join,
    Listening,
    Pipe,
    StagedContent,
    cancelled,
)
from rocketd.errors import (
    Conflict,
    ContentGone,
    EngineUnavailable,
    Forbidden,
    InvalidArgument,
    InvalidName,
    LimitReached,
    NoSuchResource,
)
from rocketd.interfaces import DEFAULT_DOMAIN, DEFAULT_FEED, FEED_TYPES, IEngine, PIPE_TYPES

_DOMAIN_NAME = re.compile(r"[A-Za-z0-9._/-]{1,256}\Z")
_FEED_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
#: A staged content's queue: this prefix and its hash.
STAGE_QUEUE = "rocketd:stage:"
#: The header of rocketd's control messages in a pipe's queue.
CONTROL = "x-rocketd-control"

#: What is not built yet on this engine (the operations fail with
#: InvalidArgument naming it, never silently).
NOT_YET = "not yet on the RabbitMQ engine"


def operation(method):
    """An engine operation: its exceptions become a failed Deferred; the broker must be up."""

    def wrapper(self, *args, **kw):
        if not self.up:
            starting = self._started
            if starting is not None and not starting.called:
                # Called while the first connection is being made: wait for it.
                waiting = Deferred()
                starting.addBoth(lambda result: (waiting.callback(None), result)[1])
                return waiting.addCallback(lambda _: wrapper(self, *args, **kw))
            return fail(self.broker.unavailable())
        return maybeDeferred(method, self, *args, **kw)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def after(d: Deferred) -> Deferred:
    """@return: a new Deferred firing with None once C{d} has fired (C{d}'s result untouched)."""
    waiting = Deferred()

    def fired(result):
        waiting.callback(None)
        return result

    d.addBoth(fired)
    return waiting


def _ack(channel, tag, multiple=False):
    """Acknowledge on a channel that is still open (a closed one has requeued the delivery)."""
    if channel is not None and channel.is_open:
        channel.basic_ack(tag, multiple=multiple)


def _checkText(value, what):
    if not isinstance(value, str):
        raise InvalidArgument(f"The {what} must be a string.")
    return value


@implementer(IEngine)
class RabbitMQEngine:
    """
    The RabbitMQ engine (experimental).

    @ivar stats: counters since start, as the embedded engine's.
    """

    log = Logger()

    def __init__(self, reactor, url: str, heartbeat: int = 10, pipeDepth: int = 10000, feedBacklog: int = 10000,
                 backlogAge: Optional[float] = None, stageTTL: float = 3600.0, stageCount: int = 1000,
                 stageBytes: int = 16777216, connect=_amqp.tcpConnect):
        """
        @param reactor: the reactor (TCP and time).
        @param url: the broker's AMQP URI (credentials and broker vhost).
        @param heartbeat: the AMQP heartbeat, in seconds.
        @param pipeDepth: how many messages a pipe holds before it drops its oldest.
        """
        _amqp.parameters(url, heartbeat)  # a bad URI fails here, not at start
        if pipeDepth < 1:
            raise ValueError("pipeDepth must be at least 1")
        self.clock = reactor
        self.pipeDepth = pipeDepth
        self.feedBacklog = feedBacklog
        self.backlogAge = backlogAge
        self.stageTTL = stageTTL
        self.stageCount = stageCount
        self.stageBytes = stageBytes
        #: Staged contents by hash (the log's), and who dropped each (claim races).
        self.staged: Dict[str, StagedContent] = {}
        self._dropped: Dict[str, str] = {}
        self.stats = {"published": 0, "delivered": 0, "dropped": 0}
        self.hashes = HashSource()
        self.domains: Dict[str, Domain] = {}
        self.registry: Dict[str, object] = {}
        self.meta = MetaLog(self._apply)
        self.broker = _amqp.Broker(reactor, url, heartbeat, onReady=self._ready, onLost=self._lost, connect=connect)
        self._publisher = None
        self._admin = None
        self._connection = None
        self._listenQueue = None
        self._bound: Dict[str, Deferred] = {}
        self._messages = weakref.WeakValueDictionary()
        self._started = None
        self._endMarkers: Dict[str, Deferred] = {}
        #: x-rocketd-id -> Deferred firing with 1 once the dispatcher placed
        #: the message in a pipe, 0 once it kept or dropped it.
        self._placements: Dict[str, Deferred] = {}

    @property
    def up(self):
        return self.broker.up

    # -- connection --

    def start(self):
        """Connect and replay the metadata; fire once done (or once the first attempt failed)."""
        if self._started is None:
            self._started = self.broker.start()
        return self._started

    @inlineCallbacks
    def _ready(self, connection):
        self._connection = connection
        self._publisher = _amqp.Channel(connection, confirm=True)
        self._admin = _amqp.Channel(connection)
        publisher = yield self._publisher.get()
        yield self.meta.attach(connection, publisher)
        yield self._ensureDefaultDomain()

    def _lost(self):
        error = EngineUnavailable("The message broker connection was lost; retry later.")
        self.meta.detach(error)
        self._connection = self._publisher = self._admin = None
        self._listenQueue = None
        self._bound.clear()
        for domain in self.domains.values():
            for pipe in domain.pipes.values():
                self._disown(pipe, error)
            for feed in domain.allFeeds.values():
                for listening in list(feed.listeners):
                    listening.end()
                feed.listeners = []
                feed.dispatcher = None
                feed.backlogged = []
        placements, self._placements = self._placements, {}
        for d in placements.values():
            d.callback(0)

    def _ensureDefaultDomain(self):
        if DEFAULT_DOMAIN in self.domains:
            return succeed(None)
        return self.meta.append({"op": "domain.create", "name": DEFAULT_DOMAIN, "title": "",
                                 "feed": self.hashes.draw(), "t": self.clock.seconds()})

    def stop(self):
        for domain in self.domains.values():
            for pipe in domain.pipes.values():
                pipe.owner = None
                pipe.fail(CancelledError())
        return self.broker.stop()

    # -- the replica (applying the log's events, in order) --

    def _apply(self, event):
        handler = getattr(self, "_on_" + event.get("op", "").replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def _on_domain_create(self, e):
        if e["name"] in self.domains:
            return
        domain = self.domains[e["name"]] = Domain(self, e["name"], e.get("title", ""), e["t"])
        feed = Feed(self, domain, e["feed"], DEFAULT_FEED, "direct", "", "", True, None, None, e["t"])
        domain.feeds[DEFAULT_FEED] = domain.allFeeds[feed.hash] = feed
        self.registry[feed.hash] = feed

    def _on_domain_delete(self, e):
        domain = self.domains.pop(e["name"], None)
        if domain is None:
            return
        domain.deleted = True
        for pipe in list(domain.pipes.values()):
            self._removePipe(pipe)
        for feed in list(domain.allFeeds.values()):
            self._removeFeed(feed, e["t"])

    def _on_feed_create(self, e):
        domain = self.domains.get(e["domain"])
        if domain is None or (e["name"] is not None and e["name"] in domain.feeds):
            return
        feed = Feed(self, domain, e["hash"], e["name"], e["type"], e["title"], e["license"], False,
                    e.get("backlog"), e.get("backlogAge"), e["t"])
        domain.allFeeds[feed.hash] = feed
        if feed.name is not None:
            domain.feeds[feed.name] = feed
            domain.touch(e["t"])
        self.registry[feed.hash] = feed

    def _on_feed_update(self, e):
        feed = self.registry.get(e["hash"])
        if isinstance(feed, Feed):
            if e.get("title") is not None:
                feed.title = e["title"]
            if e.get("license") is not None:
                feed.license = e["license"]
            feed.touch(e["t"])

    def _on_feed_delete(self, e):
        feed = self.registry.get(e["hash"])
        if isinstance(feed, Feed):
            self._removeFeed(feed, e["t"])

    def _removeFeed(self, feed, now):
        feed.deleted = True
        channel, feed.dispatcher = feed.dispatcher, None
        if channel is not None and not isinstance(channel, Deferred) and not channel.is_closed:
            channel.close()
        for entry in feed.backlogged:
            self._placed(entry[1], 0)
        feed.backlogged = []
        domain = feed.home
        for join in list(feed.joins.values()):
            self._removeJoin(join, now)
        domain.allFeeds.pop(feed.hash, None)
        if feed.name is not None and domain.feeds.get(feed.name) is feed:
            del domain.feeds[feed.name]
            domain.touch(now)
        self.registry.pop(feed.hash, None)

    def _on_pipe_create(self, e):
        domain = self.domains.get(e["domain"])
        if domain is None:
            return
        pipe = Pipe(self, domain, e["hash"], e["type"], e["title"], e["t"])
        domain.pipes[pipe.hash] = pipe
        domain.touch(e["t"])
        self.registry[pipe.hash] = pipe
        self.registry[pipe.asynclet] = pipe
        default = domain.feeds[DEFAULT_FEED]
        join = Join(pipe, default, e["join"], pipe.name, {}, None, True, e["t"])
        pipe.joins[join.hash] = join
        default.joins[join.hash] = join
        self.registry[join.hash] = join

    def _on_pipe_delete(self, e):
        pipe = self.registry.get(e["hash"])
        if isinstance(pipe, Pipe):
            self._removePipe(pipe)
            pipe.home.touch(e["t"])

    def _removePipe(self, pipe):
        pipe.deleted = True
        for join in list(pipe.joins.values()):
            self._removeJoin(join, None)
        pipe.home.pipes.pop(pipe.hash, None)
        self.registry.pop(pipe.hash, None)
        self._disown(pipe, NoSuchResource("The pipe was deleted."))
        self.registry.pop(pipe.asynclet, None)
        if pipe.consumer is not None:
            pipe.consumer.end()

    def _on_join_create(self, e):
        pipe, feed = self.registry.get(e["pipe"]), self.registry.get(e["feed"])
        if not isinstance(pipe, Pipe) or not isinstance(feed, Feed):
            return
        join = Join(pipe, feed, e["hash"], e["address"], e["headers"], e.get("pattern"), False, e["t"])
        for other in pipe.joins.values():
            if other.key() == join.key():
                return
        pipe.joins[join.hash] = join
        feed.joins[join.hash] = join
        self.registry[join.hash] = join
        pipe.touch(e["t"])

    def _on_join_delete(self, e):
        join = self.registry.get(e["hash"])
        if isinstance(join, Join):
            self._removeJoin(join, e["t"])

    def _removeJoin(self, join, now):
        join.deleted = True
        join.pipe.joins.pop(join.hash, None)
        join.feed.joins.pop(join.hash, None)
        self.registry.pop(join.hash, None)
        if now is not None:
            join.pipe.touch(now)

    # -- AMQP helpers --

    @inlineCallbacks
    def _declare(self, what, *args, **kw):
        """Run one declaration on the admin channel (reopened if a failure closed it)."""
        if self._admin is None:
            raise self.broker.unavailable()
        channel = yield self._admin.get()
        result = yield getattr(channel, what)(*args, **kw)
        return result

    @inlineCallbacks
    def _declareExchange(self, feed):
        if feed.isDefault:
            return
        kind = EXCHANGE_TYPES[feed.type]
        try:
            yield self._declare("exchange_declare", feed.exchange, kind, durable=True)
        except EngineUnavailable:
            raise
        except Exception:
            # Left over with another type by a feed the log deleted: the log is right.
            yield self._declare("exchange_delete", feed.exchange)
            yield self._declare("exchange_declare", feed.exchange, kind, durable=True)

    def _publish(self, exchange, routingKey, properties, body):
        if self._publisher is None:
            return fail(self.broker.unavailable())
        d = self._publisher.get()
        d.addCallback(lambda channel: channel.basic_publish(exchange, routingKey, body,
                                                             _amqp.BasicProperties(**properties)))
        return d

    def _emit(self, domain, kind, event, headers):
        """Publish a lifecycle event into a domain's system feeds."""
        ds = []
        for feed in domain.systemFeeds():
            message = Message(address=f"{kind}.{event}", headers=dict(headers))
            key, props, body = toAMQP(message, uuid.uuid4().hex, feed.hash)
            ds.append(self._publish(feed.exchange, key, props, body))
        return DeferredList(ds, consumeErrors=True)

    # -- IEngine --

    @operation
    @inlineCallbacks
    def createDomain(self, name, title=""):
        if not isinstance(name, str) or not _DOMAIN_NAME.match(name):
            raise InvalidName("A domain name is 1 to 256 characters of letters, digits, '.', '_', '-' and '/'.")
        _checkText(title, "title")
        if name not in self.domains:
            yield self.meta.append({"op": "domain.create", "name": name, "title": title,
                                    "feed": self.hashes.draw(), "t": self.clock.seconds()})
        return self.domains[name]

    @operation
    def getDomain(self, name):
        domain = self.domains.get(name) if isinstance(name, str) else None
        if domain is None:
            raise NoSuchResource(f"There is no domain {name!r}.")
        return domain

    @operation
    def listDomains(self):
        return list(self.domains.values())

    @operation
    @inlineCallbacks
    def deleteDomain(self, name):
        domain = self.domains.get(name) if isinstance(name, str) else None
        if domain is None:
            return None
        feeds = list(domain.allFeeds.values())
        pipes = list(domain.pipes.values())
        yield self.meta.append({"op": "domain.delete", "name": name, "t": self.clock.seconds()})
        for pipe in pipes:
            yield self._declare("queue_delete", pipe.queue)
        for feed in feeds:
            if not feed.isDefault:
                yield self._declare("exchange_delete", feed.exchange)
            if feed.type in ROTATING:
                yield self._declare("queue_delete", feed.queue)
        return None

    @operation
    def lookup(self, hash):
        if not isinstance(hash, str):
            raise NoSuchResource("There is no such resource.")
        found = self.registry.get(hash)
        if found is not None:
            if type(found) is Pipe and hash != found.hash:
                return Asynclet(hash, found, found.asyncletSince)
            return found
        record = self._stagedRecord(hash)
        if record is not None:
            return self._stagedBody(record).addCallback(lambda _: record)
        base, dot, index = hash.rpartition(".")
        if dot and index.isascii() and index.isdigit():
            held = self.registry.get(base)
            if type(held) is HeldMessage and f"{base}.{index}" in held.contentHashes:
                return HeldContent(held, int(index))
        raise NoSuchResource("There is no such resource.")

    # -- domains --

    @operation
    @inlineCallbacks
    def createFeed(self, domain, name, type, title, license, backlog, backlogAge):
        if domain.deleted:
            raise NoSuchResource("The domain was deleted.")
        if name is not None and (not isinstance(name, str) or not _FEED_NAME.match(name) or name.startswith("amq.")):
            raise InvalidName("A feed name is 1 to 128 of letters, digits, '.', '_' and '-', not starting with 'amq.'.")
        if type is not None and type not in FEED_TYPES:
            raise InvalidArgument(f"{type!r} is not a feed type; the types are: {', '.join(FEED_TYPES)}.")
        _checkText(title, "title")
        _checkText(license, "license")
        existing = domain.feeds.get(name) if name is not None else None
        if existing is None:
            hash = self.hashes.draw()
            yield self.meta.append({"op": "feed.create", "domain": domain.name, "name": name, "type": type or "topic",
                                    "title": title, "license": license, "hash": hash, "backlog": backlog,
                                    "backlogAge": backlogAge, "t": self.clock.seconds()})
            if domain.deleted:
                raise NoSuchResource("The domain was deleted.")
            existing = self.registry.get(hash) if name is None else domain.feeds.get(name)
            if existing is not None and existing.hash == hash:
                yield self._declareExchange(existing)
                if existing.type in ROTATING:
                    yield self._declare("queue_declare", existing.queue, durable=True)
                    yield self._declare("queue_bind", existing.queue, existing.exchange)
                    yield self._dispatcher(existing)
                yield self._emit(domain, "feed", "created", existing.eventHeaders())
                return existing, True
        if existing is None:
            raise NoSuchResource("The feed was deleted meanwhile.")
        if type is not None and existing.type != type:
            raise Conflict(f"The feed {name!r} exists with type {existing.type}.")
        return existing, False

    @operation
    def getFeed(self, domain, name):
        feed = domain.feeds.get(name) if isinstance(name, str) else None
        if feed is None:
            raise NoSuchResource(f"There is no feed {name!r}.")
        return feed

    @operation
    def listFeeds(self, domain):
        return list(domain.feeds.values())

    @operation
    @inlineCallbacks
    def createPipe(self, domain, type, title):
        if type not in PIPE_TYPES:
            raise InvalidArgument(f"{type!r} is not a pipe type; the types are: {', '.join(PIPE_TYPES)}.")
        _checkText(title, "title")
        if domain.deleted:
            raise NoSuchResource("The domain was deleted.")
        hash = self.hashes.draw()
        yield self._declare("queue_declare", hash, durable=True, arguments={"x-queue-version": 2})
        yield self.meta.append({"op": "pipe.create", "domain": domain.name, "hash": hash, "type": type,
                                "title": title, "join": self.hashes.draw(), "t": self.clock.seconds()})
        pipe = self.registry.get(hash)
        if pipe is None:
            yield self._declare("queue_delete", hash)
            raise NoSuchResource("The domain was deleted.")
        yield self._own(pipe)
        yield self._emit(domain, "pipe", "created", pipe.eventHeaders())
        [join] = pipe.joins.values()
        yield self._emit(domain, "join", "created", join.eventHeaders())
        return pipe

    @operation
    def listPipes(self, domain):
        return list(domain.pipes.values())

    # -- feeds --

    @operation
    @inlineCallbacks
    def updateFeed(self, feed, title, license):
        if feed.isDefault:
            raise Forbidden("The default feed can't be changed.")
        if title is not None:
            _checkText(title, "title")
        if license is not None:
            _checkText(license, "license")
        if feed.deleted:
            raise NoSuchResource("The feed was deleted.")
        yield self.meta.append({"op": "feed.update", "hash": feed.hash, "title": title, "license": license,
                                "t": self.clock.seconds()})
        return feed

    @operation
    @inlineCallbacks
    def deleteFeed(self, feed):
        if feed.isDefault:
            raise Forbidden("The default feed can't be deleted.")
        if feed.deleted:
            return None
        if feed.listeners:
            # A marker through the node queue ends the listeners after what was published before.
            ended = Deferred()
            self._endMarkers[feed.exchange] = ended
            yield self._publish(feed.exchange, "", {"headers": {CONTROL: "end"}, "delivery_mode": 1}, b"")
            yield ended
        domain = feed.home
        yield self.meta.append({"op": "feed.delete", "hash": feed.hash, "t": self.clock.seconds()})
        yield self._declare("exchange_delete", feed.exchange)
        if feed.type in ROTATING:
            yield self._declare("queue_delete", feed.queue)
        if not domain.deleted:
            yield self._emit(domain, "feed", "deleted", feed.eventHeaders())
        return None

    @operation
    def listFeedJoins(self, feed):
        return list(feed.joins.values())

    # -- staged contents: a durable queue each, bounds kept in the log --

    @operation
    @inlineCallbacks
    def stageContent(self, feed, content):
        if feed.deleted:
            raise NoSuchResource("The feed was deleted.")
        if not isinstance(content, Content):
            raise InvalidArgument("Only a Content can be staged.")
        if content.length > self.stageBytes:
            raise LimitReached(f"A feed keeps at most {self.stageBytes} bytes of staged contents.")
        hash = self.hashes.draw()
        queue = STAGE_QUEUE + hash
        yield self._declare("queue_declare", queue, durable=True,
                            arguments={"x-expires": int(self.stageTTL * 1000) + 60000})
        properties = {"content_type": content.type, "delivery_mode": 2}
        yield self._publish("", queue, properties, content.body)
        yield self.meta.append({"op": "stage.create", "hash": hash, "feed": feed.hash, "size": content.length,
                                "t": self.clock.seconds()})
        record = self.staged.get(hash)
        if record is None:
            yield self._declare("queue_delete", queue)
            raise LimitReached(
                f"This feed keeps {self.stageCount} staged contents and {self.stageBytes} bytes of them "
                "at most; claim or delete some first."
            )
        record.content = content
        return record

    @operation
    @inlineCallbacks
    def claimContent(self, feed, hash):
        record = self._stagedRecord(hash)
        if record is None:
            raise ContentGone("There is no such staged content (claimed, deleted, expired or never staged).")
        if record.feed != feed.hash:
            raise Forbidden("That content was staged on another feed.")
        content = yield self._stagedBody(record)
        event = yield self.meta.append({"op": "stage.drop", "hash": hash, "t": self.clock.seconds()})
        if self._dropped.pop(hash, None) != event["id"]:
            raise ContentGone("The staged content was claimed meanwhile.")
        yield self._declare("queue_delete", STAGE_QUEUE + hash)
        return content

    @operation
    @inlineCallbacks
    def deleteStaged(self, record):
        if self._stagedRecord(record.hash) is record:
            yield self.meta.append({"op": "stage.drop", "hash": record.hash, "t": self.clock.seconds()})
            self._dropped.pop(record.hash, None)
            yield self._declare("queue_delete", STAGE_QUEUE + record.hash)
        return None

    def _stagedRecord(self, hash):
        record = self.staged.get(hash) if isinstance(hash, str) else None
        if record is not None and self.clock.seconds() - record.created >= self.stageTTL:
            return None
        return record

    @inlineCallbacks
    def _stagedBody(self, record):
        """A staged content's bytes: this node's copy, else the queue's (read, then put back)."""
        if record.content is None:
            channel = yield self._connection.channel()
            try:
                got = yield channel.basic_get(STAGE_QUEUE + record.hash)
                if got is None:
                    raise ContentGone("The staged content's bytes are gone (expired).")
                record.content = Content(got.properties.content_type or "application/octet-stream", got.body)
                channel.basic_reject(got.method.delivery_tag, requeue=True)
            finally:
                channel.close()
        return record.content

    def _on_stage_create(self, e):
        feed = self.registry.get(e["feed"])
        if not isinstance(feed, Feed):
            return
        now = e["t"]
        mine = [r for r in self.staged.values() if r.feed == feed.hash]
        for record in mine:
            if now - record.created >= self.stageTTL:
                del self.staged[record.hash]
        mine = [r for r in mine if r.hash in self.staged]
        if len(mine) + 1 > self.stageCount or sum(r.size for r in mine) + e["size"] > self.stageBytes:
            return
        self.staged[e["hash"]] = StagedContent(self, e["hash"], e["feed"], e["size"], now)

    def _on_stage_drop(self, e):
        if self.staged.pop(e["hash"], None) is not None:
            self._dropped[e["hash"]] = e["id"]

    @operation
    @inlineCallbacks
    def publish(self, feed, messages):
        if feed.type == "system":
            raise Forbidden("Only the engine publishes to a system feed.")
        if feed.deleted:
            raise NoSuchResource("The feed was deleted.")
        # Message.feed is write-once: set here, as the publish is accepted;
        # a message already published to another feed is refused, and
        # then nothing of this publish is routed.
        for message in messages:
            if message.feed is not None and message.feed is not feed:
                raise InvalidArgument("A message already published to another feed can't be published here.")
        for message in messages:
            message.feed = feed
        sends = []
        delivered = 0
        domain = feed.home
        placements = []
        for message in messages:
            rotating = feed if feed.type in ROTATING else None
            if feed.isDefault:
                target = domain.pipes.get(message.address)
                named = domain.feeds.get(message.address)
                if target is not None:
                    exchange, count = "", 1
                elif named is not None and named.type in ROTATING:
                    rotating, exchange, count = named, named.exchange, 0
                elif domain.name == DEFAULT_DOMAIN and message.address and ":" not in message.address \
                        and "/" not in message.address and message.address not in domain.feeds:
                    exchange, count = "", 0  # an AMQP queue of that name, if any
                else:
                    continue
            elif rotating is not None:
                exchange, count = feed.exchange, 0
            else:
                exchange = feed.exchange
                pipes = {j.pipe for j in feed.joins.values() if j.matches(message)}
                count = len(pipes)
            messageId = uuid.uuid4().hex
            key, props, body = toAMQP(message, messageId, feed.hash)
            if rotating is not None:
                yield self._dispatcher(rotating)
                placed = self._placements[messageId] = Deferred()
                placements.append(placed.addTimeout(10, self.clock, onTimeoutCancel=lambda result, timeout: 0))
            sends.append((exchange, key, props, body))
            delivered += count
        if self._publisher is None:
            raise self.broker.unavailable()
        channel = yield self._publisher.get()
        confirms = [channel.basic_publish(e, k, b, _amqp.BasicProperties(**p)) for e, k, p, b in sends]
        results = yield DeferredList(confirms, consumeErrors=True)
        for ok, result in results:
            if not ok:
                for placed in placements:
                    placed.cancel()
                raise EngineUnavailable(f"The broker did not take a message ({result.value!r}); retry later.")
        for placed in placements:
            delivered += yield placed
        self.stats["published"] += len(messages)
        return delivered

    # -- listeners --

    @operation
    @inlineCallbacks
    def listen(self, feed, listener):
        if feed.deleted:
            raise NoSuchResource("The feed was deleted.")
        if feed.type != "fanout":
            raise Forbidden("Only fanout feeds take listeners.")
        if not callable(listener):
            raise InvalidArgument("A listener must be callable.")
        yield self._bind(feed)
        listening = Listening(feed, listener)
        feed.listeners.append(listening)
        return listening

    @inlineCallbacks
    def _bind(self, feed):
        """Bind this node's queue to a fanout feed's exchange (once)."""
        if self._listenQueue is None:
            self._listenQueue = Deferred()
            channel = yield self._connection.channel()
            name = f"rocketd:node:{self.meta.node}"
            yield channel.queue_declare(name, exclusive=True, auto_delete=True,
                                        arguments={"x-max-length": 100000})
            queue, _ = yield channel.basic_consume(name, auto_ack=True)
            _amqp.drain(queue, self._listened)
            d, self._listenQueue = self._listenQueue, (channel, name)
            d.callback(None)
        elif isinstance(self._listenQueue, Deferred):
            waiting = Deferred()
            self._listenQueue.addBoth(lambda r: (waiting.callback(None), r)[1])
            yield waiting
        if feed.exchange not in self._bound:
            channel, name = self._listenQueue
            self._bound[feed.exchange] = channel.queue_bind(name, feed.exchange)
        yield self._bound[feed.exchange]

    def _listened(self, delivery):
        exchange = delivery.method.exchange
        headers = delivery.properties.headers or {}
        if headers.get(CONTROL) == "end":
            self._bound.pop(exchange, None)
            ended = self._endMarkers.pop(exchange, None)
            for feed in self._feedsOf(exchange):
                for listening in list(feed.listeners):
                    listening.end()
                feed.listeners = []
            if ended is not None:
                ended.callback(None)
            return
        for feed in self._feedsOf(exchange):
            if not feed.listeners:
                continue
            message = self._message(delivery, feed)
            for listening in list(feed.listeners):
                if listening.stopped:
                    continue
                try:
                    listening.listener(message)
                except Exception:
                    self.log.failure("A feed listener failed")

    def _feedsOf(self, exchange):
        return [f for d in self.domains.values() for f in d.allFeeds.values() if f.exchange == exchange]

    def _message(self, delivery, feed=None, fallback=None):
        """The one Message of a delivery on this node (the same object for every pipe and listener)."""
        headers = delivery.properties.headers or {}
        if feed is None:
            feed = self.registry.get(headers.get(FEED))
            if not isinstance(feed, Feed):
                found = self._feedsOf(delivery.method.exchange) if delivery.method.exchange else []
                feed = found[0] if found else fallback
        key = headers.get(MESSAGE_ID)
        if key is not None:
            message = self._messages.get(key)
            if message is not None:
                return message
        message = fromAMQP(delivery.method.routing_key, delivery.properties, delivery.body, feed)
        if key is not None:
            self._messages[key] = message
        return message

    # -- pipes --

    @operation
    @inlineCallbacks
    def join(self, pipe, feed, address="*", headers=None, predicate=None):
        if not isinstance(feed, Feed) or feed.engine is not self:
            raise InvalidArgument("A pipe joins a feed of the same engine.")
        if feed.deleted:
            raise NoSuchResource("The feed was deleted.")
        if pipe.deleted:
            raise NoSuchResource("The pipe was deleted.")
        headers = checkJoinRequest(pipe, feed, address, headers, predicate)
        # An AddressMatches checked its pattern when it was made.
        pattern = predicate.pattern if predicate is not None else None
        if len(address.encode("utf-8")) > 255:
            raise InvalidArgument("A join address is at most 255 bytes.")
        try:
            probe = Join(pipe, feed, None, address, headers, pattern, False, 0)
        except BadPattern as e:
            raise InvalidArgument(str(e))
        for other in pipe.joins.values():
            if other.key() == probe.key():
                return other, False
        hash = self.hashes.draw()
        yield self.meta.append({"op": "join.create", "hash": hash, "pipe": pipe.hash, "feed": feed.hash,
                                "address": address, "headers": headers, "pattern": pattern,
                                "t": self.clock.seconds()})
        join = self.registry.get(hash)
        if join is None:
            for other in pipe.joins.values():
                if other.key() == probe.key():
                    return other, False
            raise NoSuchResource("The pipe or the feed was deleted meanwhile.")
        if feed.type in ROTATING:
            yield self._dispatcher(feed)
            self._rotate(feed)
        else:
            yield self._declare("queue_bind", pipe.queue, feed.exchange, routing_key=address,
                                arguments=join.bindingArguments())
        yield self._emit(pipe.home, "join", "created", join.eventHeaders())
        if feed.home is not pipe.home:
            yield self._emit(feed.home, "join", "created", join.eventHeaders())
        return join, True

    @operation
    @inlineCallbacks
    def deleteJoin(self, join):
        if join.isDefault:
            raise Forbidden("A pipe's default join can't be deleted.")
        if join.deleted:
            return None
        yield self.meta.append({"op": "join.delete", "hash": join.hash, "t": self.clock.seconds()})
        if join.feed.type in ROTATING:
            yield self._deleteIdleServices([join.feed])
        elif not any(j.key()[:3] == join.key()[:3] for j in join.pipe.joins.values()):
            yield self._declare("queue_unbind", join.pipe.queue, join.feed.exchange, routing_key=join.address,
                                arguments=join.bindingArguments())
        yield self._emit(join.pipe.home, "join", "deleted", join.eventHeaders())
        if join.feed.home is not join.pipe.home:
            yield self._emit(join.feed.home, "join", "deleted", join.eventHeaders())
        return None

    @operation
    def listPipeJoins(self, pipe):
        return list(pipe.joins.values())

    @operation
    @inlineCallbacks
    def deletePipe(self, pipe):
        if pipe.deleted:
            return None
        domain = pipe.home
        services = [j.feed for j in pipe.joins.values() if j.feed.type == "service"]
        yield self.meta.append({"op": "pipe.delete", "hash": pipe.hash, "t": self.clock.seconds()})
        yield self._declare("queue_delete", pipe.queue)
        yield self._deleteIdleServices(services)
        yield self._emit(domain, "pipe", "deleted", pipe.eventHeaders())
        return None

    # -- the owner of a pipe (this node) --

    @inlineCallbacks
    def _own(self, pipe):
        """Consume the pipe's queue (once), exclusively, without acknowledging."""
        if pipe.owner is None:
            pipe.owner = Deferred()
            try:
                channel = yield self._connection.channel()
                queue, _ = yield channel.basic_consume(pipe.queue, exclusive=True)
            except Exception as e:
                d, pipe.owner = pipe.owner, None
                d.errback(e)
                raise
            d, pipe.owner = pipe.owner, channel
            pipe.markers = {}
            _amqp.drain(queue, lambda delivery: self._arrived(pipe, channel, delivery))
            d.callback(channel)
        elif isinstance(pipe.owner, Deferred):
            waiting = Deferred()
            pipe.owner.addBoth(lambda r: (waiting.callback(None), r)[1])
            yield waiting
            if pipe.owner is None:
                raise self.broker.unavailable()
        return pipe.owner

    def _disown(self, pipe, error):
        """Forget what this node held of the pipe (the broker requeues it)."""
        channel, pipe.owner = pipe.owner, None
        if channel is not None and not isinstance(channel, Deferred) and not channel.is_closed:
            channel.close()
        for held in pipe.held.values():
            self.registry.pop(held.hash, None)
        pipe.held = {}
        pipe.fail(error)
        markers, pipe.markers = getattr(pipe, "markers", {}), {}
        for d in markers.values():
            d.errback(error)

    def _arrived(self, pipe, channel, delivery):
        if pipe.owner is not channel:
            return
        headers = delivery.properties.headers or {}
        tag = delivery.method.delivery_tag
        control = headers.get(CONTROL)
        if control is not None:
            _ack(channel, tag)
            d = pipe.markers.pop(control, None)
            if d is not None:
                d.callback(None)
            return
        message = self._message(delivery)
        if message.feed is not None and not pipe.accepts(message.feed, message):
            _ack(channel, tag)
            return
        pipe.pulling = False
        now = self.clock.seconds()
        hash = pipe.asynclet
        self.registry.pop(hash, None)
        pipe.asynclet = self.hashes.draw()
        pipe.asyncletSince = now
        self.registry[pipe.asynclet] = pipe
        pipe.sequence += 1
        held = HeldMessage(hash, message, pipe, pipe.sequence, tag, now)
        pipe.held[hash] = held
        self.registry[hash] = held
        pipe.touch(now)
        self.stats["delivered"] += 1
        while len(pipe.held) > self.pipeDepth:
            oldest = next(iter(pipe.held.values()))
            self._forget(pipe, oldest)
            _ack(channel, oldest.tag)
            pipe.dropped += 1
            self.stats["dropped"] += 1
        for d in pipe.waiters.pop(hash, []):
            d.callback(held)
        self.hand(pipe)

    def _forget(self, pipe, held):
        del pipe.held[held.hash]
        self.registry.pop(held.hash, None)

    def hand(self, pipe):
        """Hand the held messages to the pipe's consumer, in order, until it pauses."""
        consumption = pipe.consumer
        while consumption is not None and pipe.consumer is consumption and not consumption.paused and pipe.held:
            held = next(iter(pipe.held.values()))
            try:
                result = consumption.consumer(held)
            except Exception:
                self.log.failure("A pipe consumer failed")
                result = None
            if result is False:
                consumption.paused = True
                return
            if held.hash in pipe.held and pipe.owner is not None and not isinstance(pipe.owner, Deferred):
                self._forget(pipe, held)
                _ack(pipe.owner, held.tag)

    @inlineCallbacks
    def _sync(self, pipe):
        """Wait until the owner has read everything confirmed into the pipe's queue before now."""
        channel = yield self._own(pipe)
        marker = uuid.uuid4().hex
        d = pipe.markers[marker] = Deferred()
        yield self._publish("", pipe.queue, {"headers": {CONTROL: marker}, "delivery_mode": 1}, b"")
        yield d
        return channel

    @operation
    @inlineCallbacks
    def listMessages(self, pipe):
        if pipe.deleted:
            raise NoSuchResource("The pipe was deleted.")
        yield self._sync(pipe)
        return list(pipe.held.values())

    @operation
    @inlineCallbacks
    def wait(self, pipe, hash=None):
        if pipe.deleted:
            raise NoSuchResource("The pipe was deleted.")
        yield self._own(pipe)
        if hash is None:
            hash = pipe.asynclet
        held = pipe.held.get(hash)
        if held is not None:
            return held
        if hash != pipe.asynclet:
            raise NoSuchResource("That message is not in this pipe.")
        d = Deferred(cancelled(pipe.waiters, hash))
        pipe.waiters.setdefault(hash, []).append(d)
        if pipe.type == "ondemand":
            self._pull(pipe)
        held = yield d
        return held

    @operation
    @inlineCallbacks
    def remove(self, pipe, hash):
        if pipe.deleted:
            return 0
        channel = yield self._own(pipe)
        held = pipe.held.get(hash)
        if held is None:
            return 0
        older = []
        for h in pipe.held.values():
            older.append(h)
            if h is held:
                break
        for h in older:
            self._forget(pipe, h)
        pipe.touch(self.clock.seconds())
        _ack(channel, held.tag, multiple=True)
        # A round trip on the channel: the broker has the ack before we answer.
        yield channel.basic_qos(prefetch_count=0)
        if pipe.type == "ondemand":
            self._pull(pipe)
        return len(older)

    @operation
    @inlineCallbacks
    def consume(self, pipe, consumer):
        if pipe.deleted:
            raise NoSuchResource("The pipe was deleted.")
        if pipe.consumer is not None:
            raise Conflict("The pipe has a consumer already.")
        yield self._sync(pipe)
        if pipe.consumer is not None:
            raise Conflict("The pipe has a consumer already.")
        consumption = pipe.consumer = Consumption(pipe, consumer)
        self.hand(pipe)
        return consumption

    @operation
    @inlineCallbacks
    def deleteHeldContent(self, held, hash):
        if held.hash not in held.pipe.held or hash not in held.contentHashes:
            return None
        index = held.contentHashes.index(hash)
        held.contents = held.contents[:index] + held.contents[index + 1:]
        held.contentHashes = held.contentHashes[:index] + held.contentHashes[index + 1:]
        held.touch(self.clock.seconds())
        yield succeed(None)
        return None

    # -- rotator and service feeds: the dispatcher (this node) --

    @inlineCallbacks
    def _deleteIdleServices(self, feeds):
        """A service feed goes with its last join."""
        for feed in feeds:
            if feed.type == "service" and not feed.deleted and not feed.joins:
                yield self.deleteFeed(feed)

    @inlineCallbacks
    def _dispatcher(self, feed):
        """Consume a rotating feed's queue (once), unacknowledged: what is unacknowledged is the backlog."""
        while isinstance(feed.dispatcher, Deferred):
            yield after(feed.dispatcher)
        if feed.dispatcher is None and not feed.deleted:
            starting = feed.dispatcher = Deferred()
            try:
                if self._connection is None:
                    raise self.broker.unavailable()
                channel = yield self._connection.channel()
                queue, _ = yield channel.basic_consume(feed.queue)
            except Exception:
                feed.dispatcher = None
                starting.callback(None)
                raise
            feed.dispatcher = channel
            _amqp.drain(queue, lambda delivery: self._backlog(feed, channel, delivery))
            starting.callback(None)
        return feed.dispatcher

    def _placed(self, message_id, count):
        d = self._placements.pop(message_id, None) if message_id is not None else None
        if d is not None and not d.called:
            d.callback(count)

    def _backlog(self, feed, channel, delivery):
        if feed.dispatcher is not channel:
            return
        fallback = feed.home.feeds.get(DEFAULT_FEED) if not delivery.method.exchange else feed
        message = self._message(delivery, fallback=fallback)
        messageId = (delivery.properties.headers or {}).get(MESSAGE_ID)
        feed.backlogged.append((delivery.method.delivery_tag, messageId, message, delivery))
        self._rotate(feed)
        limit = feed.backlog if feed.backlog is not None else self.feedBacklog
        while len(feed.backlogged) > limit:
            tag, oldId, _, _ = feed.backlogged.pop(0)
            _ack(channel, tag)
            feed.dropped += 1
            feed.touch(self.clock.seconds())
            self.stats["dropped"] += 1
            self._placed(oldId, 0)
        self._placed(messageId, 0)

    def _rotate(self, feed):
        """Give the backlog, in order, to the next ready join that takes each message."""
        channel = feed.dispatcher
        if channel is None or isinstance(channel, Deferred):
            return
        joins = list(feed.joins.values())
        if not joins:
            return
        i = 0
        while i < len(feed.backlogged):
            tag, messageId, message, delivery = feed.backlogged[i]
            count = len(joins)
            chosen = None
            for k in range(count):
                join = joins[(feed.turn + k) % count]
                if join.pipe.ready() and not join.pipe.deleted and join.matches(message):
                    chosen = join
                    feed.turn = (feed.turn + k + 1) % count
                    break
            if chosen is None:
                i += 1
                continue
            del feed.backlogged[i]
            self._forward(feed, channel, chosen.pipe, tag, message, delivery)
            self._placed(messageId, 1)

    def _forward(self, feed, channel, pipe, tag, message, delivery):
        """Publish a backlog message into a pipe's queue; acknowledge it in the feed's queue once confirmed."""
        properties = delivery.properties
        headers = dict(properties.headers or {})
        headers[ADDRESS] = message.address
        headers.setdefault(FEED, message.feed.hash if message.feed is not None else feed.hash)
        properties.headers = headers
        if pipe.type == "ondemand":
            pipe.pulling = True
        d = self._publisher.get() if self._publisher is not None else fail(self.broker.unavailable())
        d.addCallback(lambda publisher: publisher.basic_publish("", pipe.queue, delivery.body, properties))

        def confirmed(_):
            if feed.dispatcher is channel and not channel.is_closed:
                _ack(channel, tag)

        d.addCallbacks(confirmed, lambda f: self.log.warn("Forwarding a message failed: {f}", f=f.value))

    def _pull(self, pipe):
        """An ondemand pipe became ready: its feeds' dispatchers may give it one message."""
        if pipe.ready():
            for join in list(pipe.joins.values()):
                if join.feed.type in ROTATING and pipe.ready():
                    self._rotate(join.feed)
