"""
The replica's resources: domains, feeds, pipes, joins, held messages, as
the metadata log made them (L{rocketd.engine.rabbitmq._engine} applies the
events and runs the operations). Each resource object lives as long as
its resource, so a lookup gives back the same object.
"""

from __future__ import annotations

import hashlib
import re
from typing import Dict, List, Optional

from twisted.internet.defer import CancelledError, Deferred
from zope.interface import implementer

from rocketd.engine._topic import parsePattern, splitWords, topicMatches
from rocketd.engine.predicates import AddressMatches
from rocketd.interfaces import IAsynclet, IContent, IDomain, IFeed, IHeldMessage, IJoin, IPipe

#: Copying feed types and their exchange types.
EXCHANGE_TYPES = {"fanout": "fanout", "direct": "direct", "topic": "topic", "system": "topic",
                  "headers": "headers", "rotator": "fanout", "service": "fanout"}
ROTATING = ("rotator", "service")


def exchangeName(domain: str, name: Optional[str], hash: str, isDefault: bool) -> str:
    """
    A feed's exchange: the default feed is the default exchange; a public
    feed of the default domain the exchange of its name; elsewhere
    C{<domain>/<name>}; a private feed, or a name over 255 bytes,
    C{rocketd:feed:<hash>}.
    """
    if isDefault:
        return ""
    if name is None:
        return f"rocketd:feed:{hash}"
    full = name if domain == "default" else f"{domain}/{name}"
    if len(full.encode("utf-8")) > 255:
        return "rocketd:feed:" + hashlib.sha256(full.encode("utf-8")).hexdigest()
    return full


class Resource:
    """The times and version of every resource."""

    def __init__(self, hash, created):
        self.hash = hash
        self.created = created
        self.modified = created
        self.version = 1

    def touch(self, now):
        self.modified = max(self.modified, now)
        self.version += 1


@implementer(IDomain)
class Domain(Resource):
    def __init__(self, engine, name, title, created):
        Resource.__init__(self, name, created)
        self.engine = engine
        self.name = name
        self.title = title
        self.feeds: Dict[str, "Feed"] = {}  # public, by name, in creation order
        self.allFeeds: Dict[str, "Feed"] = {}  # by hash
        self.pipes: Dict[str, "Pipe"] = {}  # by hash, in creation order
        self.deleted = False

    def createFeed(self, name=None, type="topic", title="", license="", backlog=None, backlogAge=None):
        return self.engine.createFeed(self, name, type, title, license, backlog, backlogAge)

    def getFeed(self, name):
        return self.engine.getFeed(self, name)

    def listFeeds(self):
        return self.engine.listFeeds(self)

    def createPipe(self, type="fifo", title=""):
        return self.engine.createPipe(self, type, title)

    def listPipes(self):
        return self.engine.listPipes(self)

    def systemFeeds(self):
        return [f for f in self.allFeeds.values() if f.type == "system"]


@implementer(IFeed)
class Feed(Resource):
    def __init__(self, engine, domain, hash, name, type, title, license, isDefault, backlog, backlogAge, created):
        Resource.__init__(self, hash, created)
        self.engine = engine
        self.home = domain
        self.domain = domain.name
        self.name = name
        self.type = type
        self.title = title
        self.license = license
        self.isDefault = isDefault
        self.backlog = backlog
        self.backlogAge = backlogAge
        self.dropped = 0
        self.joins: Dict[str, "Join"] = {}
        self.exchange = exchangeName(domain.name, name, hash, isDefault)
        self.deleted = False
        #: This node's listeners (see the engine's listen).
        self.listeners: List["Listening"] = []
        #: A rotating feed's dispatcher state (this node's): the channel
        #: consuming the feed's queue, the backlog of unacknowledged
        #: deliveries in order, the join that took the last message.
        self.dispatcher = None
        self.backlogged: List[tuple] = []
        self.turn = 0

    @property
    def queue(self):
        """A rotator or service feed's queue: named as its exchange (the seed's AMQP service reads it)."""
        return self.exchange

    def eventHeaders(self):
        return {"hash": self.hash, "name": self.name or "", "type": self.type, "domain": self.domain}

    def update(self, title=None, license=None):
        return self.engine.updateFeed(self, title, license)

    def delete(self):
        return self.engine.deleteFeed(self)

    def publish(self, messages):
        return self.engine.publish(self, messages)

    def stageContent(self, content):
        return self.engine.stageContent(self, content)

    def claimContent(self, hash):
        return self.engine.claimContent(self, hash)

    def listJoins(self):
        return self.engine.listFeedJoins(self)

    def listen(self, listener):
        return self.engine.listen(self, listener)


@implementer(IJoin)
class Join(Resource):
    def __init__(self, pipe, feed, hash, address, headers, pattern, isDefault, created):
        Resource.__init__(self, hash, created)
        self.pipe = pipe
        self.feed = feed
        self.address = address
        self.headers = dict(headers)
        self.pattern = pattern
        self.isDefault = isDefault
        self.deleted = False
        self._regex = re.compile(pattern) if pattern is not None else None
        if feed.type in ("topic", "system") or (feed.type in ROTATING and address not in ("*", "#")):
            self.words = parsePattern(address)
        else:
            self.words = None

    @property
    def predicate(self):
        """The join's L{AddressMatches}, or None."""
        return AddressMatches(self.pattern) if self.pattern is not None else None

    def key(self):
        return (self.feed.hash, self.address, tuple(sorted(self.headers.items())), self.pattern)

    def bindingArguments(self):
        """The AMQP binding arguments of a headers join (x- keys matched too)."""
        if self.feed.type != "headers":
            return None
        arguments = {k: v for k, v in self.headers.items() if k != "x-match"}
        arguments["x-match"] = "any-with-x" if self.headers.get("x-match") == "any" else "all-with-x"
        return arguments

    def matches(self, message) -> bool:
        """Whether the feed type's rules, then the predicate, take the message."""
        type = self.feed.type
        if self.isDefault:
            ok = message.address == self.pipe.name
        elif type == "fanout":
            ok = True
        elif type == "direct":
            ok = message.address == self.address
        elif type in ("topic", "system"):
            ok = topicMatches(self.words, splitWords(message.address))
        elif type == "headers":
            wanted = {k: v for k, v in self.headers.items() if k != "x-match"}
            found = [message.headers.get(k) == v for k, v in wanted.items()]
            ok = any(found) if self.headers.get("x-match") == "any" else all(found)
        else:  # rotator, service: * and # take every message, another address is a topic pattern
            ok = self.words is None or topicMatches(self.words, splitWords(message.address))
        return ok and (self._regex is None or self._regex.fullmatch(message.address) is not None)

    def eventHeaders(self):
        return {"hash": self.hash, "name": self.address, "feed": self.feed.hash, "pipe": self.pipe.hash}

    def delete(self):
        return self.pipe.engine.deleteJoin(self)


@implementer(IPipe)
class Pipe(Resource):
    def __init__(self, engine, domain, hash, type, title, created):
        Resource.__init__(self, hash, created)
        self.engine = engine
        self.home = domain
        self.domain = domain.name
        self.name = hash
        self.type = type
        self.title = title
        self.dropped = 0
        self.joins: Dict[str, Join] = {}
        self.deleted = False
        # The owner's state (this node consumes the pipe's queue).
        self.owner = None
        self.asynclet = engine.hashes.draw()
        self.asyncletSince = created
        self.sequence = 0
        self.held: Dict[str, "HeldMessage"] = {}
        self.waiters: Dict[str, List[Deferred]] = {}
        self.consumer = None
        #: An ondemand pipe's pull in flight (a message forwarded, not arrived yet).
        self.pulling = False

    def ready(self) -> bool:
        """Whether a rotator or service feed may give this pipe a message now."""
        if self.type != "ondemand":
            return True
        return not self.pulling and not self.held and any(self.waiters.values())

    @property
    def queue(self):
        return self.hash

    @property
    def consumed(self):
        return self.consumer is not None

    def eventHeaders(self):
        return {"hash": self.hash, "name": self.name, "type": self.type, "domain": self.domain}

    def join(self, feed, address="*", headers=None, predicate=None):
        return self.engine.join(self, feed, address, headers, predicate)

    def listJoins(self):
        return self.engine.listPipeJoins(self)

    def listMessages(self):
        return self.engine.listMessages(self)

    def wait(self, hash=None):
        return self.engine.wait(self, hash)

    def remove(self, hash):
        return self.engine.remove(self, hash)

    def consume(self, consumer):
        return self.engine.consume(self, consumer)

    def delete(self):
        return self.engine.deletePipe(self)

    def accepts(self, feed, message) -> bool:
        """Whether one of this pipe's joins onto C{feed} takes the message (its predicate included)."""
        joins = [j for j in self.joins.values() if j.feed is feed]
        if not joins or all(j._regex is None for j in joins):
            return True
        return any(j.matches(message) for j in joins)

    def fail(self, error):
        """Fail every wait (the pipe was deleted, the connection lost)."""
        waiters, self.waiters = self.waiters, {}
        for ds in waiters.values():
            for d in ds:
                d.errback(error)


@implementer(IHeldMessage)
class HeldMessage(Resource):
    def __init__(self, hash, message, pipe, sequence, tag, created):
        Resource.__init__(self, hash, created)
        self.message = message
        self.pipe = pipe
        self.sequence = sequence
        self.tag = tag
        self.next = pipe.asynclet
        self.contents = tuple(message.contents)
        self.contentHashes = tuple(f"{hash}.{i}" for i in range(len(message.contents)))


@implementer(IContent)
class HeldContent:
    version = 1

    def __init__(self, held, index):
        self.hash = f"{held.hash}.{index}"
        self.content = held.message.contents[index]  # the index among the message's contents
        self.created = self.modified = held.created
        self._held = held
        self._index = index

    def delete(self):
        return self._held.pipe.engine.deleteHeldContent(self._held, self.hash)


@implementer(IContent)
class StagedContent:
    """A content staged on a feed (its bytes in the queue C{rocketd:stage:<hash>})."""

    version = 1

    def __init__(self, engine, hash, feed, size, created):
        self.engine = engine
        self.hash = hash
        self.feed = feed
        self.size = size
        self.created = self.modified = created
        #: The bytes, once this node has them (it staged them, or read them).
        self.content = None

    def delete(self):
        return self.engine.deleteStaged(self)


@implementer(IAsynclet)
class Asynclet:
    version = 1

    def __init__(self, hash, pipe, created):
        self.hash = hash
        self.pipe = pipe
        self.created = self.modified = created


class Listening:
    """A feed listener's handle."""

    def __init__(self, feed, listener):
        self.feed = feed
        self.listener = listener
        self.ended = Deferred()
        self.stopped = False

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        if self in self.feed.listeners:
            self.feed.listeners.remove(self)
        self.ended.callback(False)

    def end(self):
        if not self.stopped:
            self.stopped = True
            self.ended.callback(True)


class Consumption:
    """A pipe consumer's handle."""

    def __init__(self, pipe, consumer):
        self.pipe = pipe
        self.consumer = consumer
        self.paused = False
        self.ended = Deferred()

    def stop(self):
        if self.pipe.consumer is self:
            self.pipe.consumer = None
            self.ended.callback(False)

    def resume(self):
        if self.pipe.consumer is self and self.paused:
            self.paused = False
            self.pipe.engine.hand(self.pipe)

    def end(self):
        if self.pipe.consumer is self:
            self.pipe.consumer = None
            self.ended.callback(True)


def cancelled(waiters, hash):
    """A canceller that removes a wait from C{waiters[hash]}."""

    def cancel(d):
        ds = waiters.get(hash)
        if ds and d in ds:
            ds.remove(d)
        if not d.called:
            d.errback(CancelledError())

    return cancel
