"""
The embedded engine: every domain, feed, pipe and join in this process's
memory.

Every operation answers at once with an already-fired Deferred. Routing
never runs application code except join predicates (which must not change
the engine): waiters and consumers of the pipes a publish reached are
notified when the whole operation has routed, so they see a consistent
engine and may call any operation.

Decisions where the profile leaves room:
 - A rotator or service join's address C{*} or C{#} takes every message;
   any other address is a topic pattern matched against the message's.
   Such a join's headers are kept but not matched.
 - A message reaches a pipe at most once per publish, however many of the
   pipe's joins onto that feed match it.
 - An ondemand pipe takes at most one message from rotator and service
   feeds; messages addressed to the pipe itself (its default join) are
   held like a fifo pipe's.
 - Lifecycle events of a join go to the system feeds of the pipe's domain,
   and of the feed's domain when it is another; their C{name} header is the
   join's address, C{feed} and C{pipe} headers carry the hashes.
 - A consumer that raises is logged and its message counts as handed.
 - L{Pipe.consume} hands the held messages before its Deferred fires.
 - A content staged on a feed and claimed by no message is kept at most
   C{stageTTL} seconds (one timer for the engine, due when the oldest one
   expires); a feed keeps at most C{stageCount} of them and
   C{stageBytes} bytes of them, and staging beyond that fails with
   L{LimitReached}.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import OrderedDict, deque
from typing import Dict, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rocketd.droplog import DropWarnings
from rocketd.engine._hashes import HashSource
from rocketd.engine._rotator import Rotation
from rocketd.engine._routers import ROUTERS
from rocketd.engine._topic import BadPattern, parsePattern, splitWords, topicMatches
from rocketd.engine.message import Content, Message
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
    FEED_TYPES,
    PIPE_TYPES,
    IAsynclet,
    IContent,
    IDomain,
    IEngine,
    IFeed,
    IHeldMessage,
    IJoin,
    IPipe,
)

_FEED_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
_DOMAIN_NAME = re.compile(r"[A-Za-z0-9._/-]{1,256}\Z")
_ROTATING = ("rotator", "service")
_ANY_ADDRESS = ("*", "#")

log = Logger()


def _operation(method):
    """
    Make a method an engine operation: its result (or exception) becomes a
    Deferred's, and pipes notified while it ran are served when it ends.
    A method may also return a Deferred, which is handed back as it is.
    """

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        engine = self._engine
        engine._busy += 1
        try:
            result = method(self, *args, **kwargs)
        except Exception:
            result = Failure()
        finally:
            engine._busy -= 1
            if not engine._busy and engine._pending:
                engine._flush()
        if isinstance(result, Deferred):
            return result
        if isinstance(result, Failure):
            return fail(result)
        return succeed(result)

    return run


def _checkText(value, what):
    if not isinstance(value, str):
        raise InvalidArgument(f"The {what} must be a string.")
    return value


def _accepts(join, message) -> bool:
    """Apply a join's predicate; one that raises takes nothing."""
    try:
        return bool(join.predicate(message))
    except Exception:
        log.failure("A join predicate failed", join=join.hash)
        return False


@implementer(IEngine)
class MemoryEngine:
    """
    The embedded engine.

    @ivar stats: counters since start: C{published} (messages published to
        feeds by clients), C{delivered} (messages put in pipes), C{dropped}
        (messages dropped by pipe depth or feed backlog limits).
    """

    log = Logger()

    def __init__(
        self,
        clock,
        pipeDepth: int = 10000,
        feedBacklog: int = 10000,
        backlogAge: Optional[float] = None,
        stageTTL: float = 3600.0,
        stageCount: int = 1000,
        stageBytes: int = 16777216,
    ):
        """
        @param clock: an L{IReactorTime}: timestamps, backlog and staged
            content expiry.
        @param pipeDepth: how many messages a pipe holds before it drops
            its oldest.
        @param feedBacklog: how many messages a rotator or service feed
            keeps for a join by default.
        @param backlogAge: how many seconds such a message may wait by
            default (None: no limit).
        @param stageTTL: how many seconds a staged content that no message
            has claimed is kept.
        @param stageCount: how many such contents a feed keeps at most.
        @param stageBytes: how many bytes of such contents a feed keeps at
            most.
        """
        if pipeDepth < 1:
            raise ValueError("pipeDepth must be at least 1")
        if feedBacklog < 0:
            raise ValueError("feedBacklog must not be negative")
        if not stageTTL > 0:
            raise ValueError("stageTTL must be greater than zero")
        if stageCount < 1 or stageBytes < 1:
            raise ValueError("stageCount and stageBytes must be at least 1")
        self._engine = self
        self._clock = clock
        self._pipeDepth = pipeDepth
        self._feedBacklog = feedBacklog
        self._backlogAge = backlogAge
        self._stageTTL = stageTTL
        self._stageCount = stageCount
        self._stageBytes = stageBytes
        #: Every staged content of the engine, oldest first (they all
        #: expire after the same time), and the timer of the oldest's expiry.
        self._stagedOrder: "OrderedDict[str, StagedContent]" = OrderedDict()
        self._stageTimer = None
        self._hashes = HashSource()
        self._drawHash = self._hashes.draw
        self._registry: Dict[str, object] = {}
        self._domains: Dict[str, Domain] = {}
        self._busy = 0
        self._flushing = False
        #: The time of the flush under way (None outside one).
        self._now: Optional[float] = None
        self._pending = deque()
        self.stats = {"published": 0, "delivered": 0, "dropped": 0}
        # What the limits drop is warned about at most once a minute per
        # pipe or feed, with the count since the previous line.
        self._pipeDrops = DropWarnings(
            self.log,
            clock,
            "Pipe {pipe} of domain {domain} dropped messages at its depth limit: "
            "{count} since the last warning, {dropped} since it was created",
        )
        self._feedDrops = DropWarnings(
            self.log,
            clock,
            "Feed {feed} of domain {domain} dropped messages from its backlog: "
            "{count} since the last warning, {dropped} since it was created",
        )

    # -- internals shared by the resources --

    def _newHash(self) -> str:
        return self._drawHash()

    def _notify(self, pipe):
        """Serve a pipe's waiters and consumer when the current operation ends."""
        if not pipe._queued:
            pipe._queued = True
            self._pending.append(pipe)

    def _flush(self):
        if self._flushing:
            return
        self._flushing = True
        # One reading of the clock serves every pipe served by this flush.
        self._now = self._clock.seconds()
        try:
            pending = self._pending
            while pending:
                pipe = pending.popleft()
                pipe._queued = False
                pipe._fire()
        finally:
            self._flushing = False
            self._now = None

    def _countDropped(self, n):
        self.stats["dropped"] += n

    def _keepStaged(self, staged):
        """Keep a new staged content until it expires."""
        self._stagedOrder[staged.hash] = staged
        if self._stageTimer is None:
            self._stageTimer = self._clock.callLater(self._stageTTL, self._expireStaged)

    def _forgetStaged(self, staged):
        """A staged content is gone (claimed, deleted, expired, its feed deleted)."""
        order = self._stagedOrder
        order.pop(staged.hash, None)
        if not order and self._stageTimer is not None:
            if self._stageTimer.active():
                self._stageTimer.cancel()
            self._stageTimer = None

    def _expireStaged(self):
        """Drop the staged contents that are due; wait for the next one."""
        self._stageTimer = None
        order = self._stagedOrder
        now = self._clock.seconds()
        expired = 0
        while order:
            staged = next(iter(order.values()))
            due = staged.created + self._stageTTL
            if due > now:
                self._stageTimer = self._clock.callLater(due - now, self._expireStaged)
                break
            staged._feed._unstage(staged)
            expired += 1
        if expired:
            self.log.debug("{count} staged contents expired", count=expired)

    # -- IEngine --

    @_operation
    def createDomain(self, name, title=""):
        if not isinstance(name, str) or not _DOMAIN_NAME.match(name):
            raise InvalidName("A domain name is 1 to 256 characters of letters, digits, '.', '_', '-' and '/'.")
        _checkText(title, "title")
        domain = self._domains.get(name)
        if domain is None:
            domain = self._domains[name] = Domain(self, name, title)
            self.log.info("Domain {domain} created", domain=name)
        return domain

    @_operation
    def getDomain(self, name):
        domain = self._domains.get(name) if isinstance(name, str) else None
        if domain is None:
            raise NoSuchResource(f"There is no domain {name!r}.")
        return domain

    @_operation
    def listDomains(self):
        return list(self._domains.values())

    @_operation
    def deleteDomain(self, name):
        domain = self._domains.pop(name, None) if isinstance(name, str) else None
        if domain is not None:
            domain._destroy()
            self.log.info("Domain {domain} deleted", domain=name)

    @_operation
    def lookup(self, hash):
        if not isinstance(hash, str):
            raise NoSuchResource("There is no such resource.")
        found = self._registry.get(hash)
        if found is not None:
            if type(found) is Pipe and hash != found.hash:
                # The registry names a pipe's pending asynclet by the pipe.
                return Asynclet(hash, found, found._asyncletSince)
            return found
        base, dot, index = hash.rpartition(".")
        if dot and index.isascii() and index.isdigit() and str(int(index)) == index:
            held = self._registry.get(base)
            if type(held) is HeldMessage and held._holds(int(index)):
                return HeldContent(held, int(index))
        raise NoSuchResource("There is no such resource.")

    @_operation
    def stop(self):
        if self._stageTimer is not None:
            if self._stageTimer.active():
                self._stageTimer.cancel()
            self._stageTimer = None
        self._pipeDrops.stop()
        self._feedDrops.stop()
        for domain in list(self._domains.values()):
            for pipe in list(domain._pipes.values()):
                pipe._cancelWaits()
            for feed in domain._allFeeds.values():
                if feed._rotation is not None:
                    feed._rotation.stop()


@implementer(IDomain)
class Domain:
    """A domain: its feeds (the default one first) and its pipes."""

    def __init__(self, engine: MemoryEngine, name: str, title: str):
        self._engine = engine
        self.name = name
        self.title = title
        self.created = self.modified = engine._clock.seconds()
        self.version = 1
        self._deleted = False
        self._feeds: Dict[str, Feed] = {}
        self._allFeeds: Dict[str, Feed] = {}
        self._systemFeeds: Dict[str, Feed] = {}
        self._pipes: Dict[str, Pipe] = {}
        self.defaultFeed = Feed(self, DEFAULT_FEED, "direct", "Default feed", "", isDefault=True)
        self._addFeed(self.defaultFeed)

    def __repr__(self):
        return f"<Domain {self.name!r}>"

    def _touch(self):
        self.modified = self._engine._clock.seconds()
        self.version += 1

    def _checkLive(self):
        if self._deleted:
            raise NoSuchResource(f"The domain {self.name!r} was deleted.")

    def _addFeed(self, feed):
        self._engine._registry[feed.hash] = feed
        self._allFeeds[feed.hash] = feed
        if feed.name is not None:
            self._feeds[feed.name] = feed
        if feed.type == "system":
            self._systemFeeds[feed.hash] = feed
        self._touch()

    def _removeFeed(self, feed):
        self._engine._registry.pop(feed.hash, None)
        self._allFeeds.pop(feed.hash, None)
        self._systemFeeds.pop(feed.hash, None)
        if feed.name is not None and self._feeds.get(feed.name) is feed:
            del self._feeds[feed.name]
        self._touch()

    def _emit(self, kind: str, event: str, headers: dict):
        """Publish a lifecycle event into this domain's system feeds."""
        if self._deleted or not self._systemFeeds:
            return
        now = self._engine._clock.seconds()
        for feed in list(self._systemFeeds.values()):
            message = Message(address=f"{kind}.{event}", headers=dict(headers), feed=feed)
            feed._route(message, now)

    def _destroy(self):
        self._deleted = True
        for pipe in list(self._pipes.values()):
            pipe._destroy()
        for feed in list(self._allFeeds.values()):
            feed._destroy()

    # -- IDomain --

    @_operation
    def createFeed(self, name=None, type="topic", title="", license="", backlog=None, backlogAge=None):
        self._checkLive()
        if name is not None:
            if not isinstance(name, str) or not _FEED_NAME.match(name) or name.startswith("amq."):
                raise InvalidName(
                    "A feed name is 1 to 128 characters of letters, digits, '.', '_' and '-', not starting with 'amq.'."
                )
        if type is not None and type not in FEED_TYPES:
            raise InvalidArgument(f"Unknown feed type {type!r}; the types are {', '.join(FEED_TYPES)}.")
        if name is not None:
            existing = self._feeds.get(name)
            if existing is not None:
                if type is not None and existing.type != type:
                    raise Conflict(f"The feed {name!r} exists with type {existing.type!r}.")
                return (existing, False)
        if type is None:
            type = "topic"
        _checkText(title, "title")
        _checkText(license, "license")
        if backlog is not None and (isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0):
            raise InvalidArgument("A feed backlog must be a non-negative integer.")
        if backlogAge is not None and (
            isinstance(backlogAge, bool) or not isinstance(backlogAge, (int, float)) or backlogAge < 0
        ):
            raise InvalidArgument("A feed backlog age must be a non-negative number of seconds.")
        feed = Feed(self, name, type, title, license, backlog=backlog, backlogAge=backlogAge)
        self._addFeed(feed)
        self._engine.log.debug("Feed {hash} ({type}) created in {domain}", hash=feed.hash, type=type, domain=self.name)
        self._emit("feed", "created", feed._eventHeaders())
        return (feed, True)

    @_operation
    def getFeed(self, name):
        self._checkLive()
        feed = self._feeds.get(name) if isinstance(name, str) else None
        if feed is None:
            raise NoSuchResource(f"There is no feed {name!r}.")
        return feed

    @_operation
    def listFeeds(self):
        self._checkLive()
        return list(self._feeds.values())

    @_operation
    def createPipe(self, type="fifo", title=""):
        self._checkLive()
        if type not in PIPE_TYPES:
            raise InvalidArgument(f"Unknown pipe type {type!r}; the types are {', '.join(PIPE_TYPES)}.")
        _checkText(title, "title")
        pipe = Pipe(self, type, title)
        self._pipes[pipe.hash] = pipe
        self._touch()
        join = Join(pipe, self.defaultFeed, pipe.name, {}, None, isDefault=True)
        pipe._attach(join)
        self._engine.log.debug("Pipe {hash} ({type}) created in {domain}", hash=pipe.hash, type=type, domain=self.name)
        self._emit("pipe", "created", pipe._eventHeaders())
        join._emit("created")
        return pipe

    @_operation
    def listPipes(self):
        self._checkLive()
        return list(self._pipes.values())


class _Resource:
    """Timestamps and version of a mutable resource."""

    def _touch(self, now=None):
        self.modified = self._engine._clock.seconds() if now is None else now
        self.version += 1


@implementer(IContent)
class StagedContent:
    """A content staged on a feed, waiting for a message to claim it."""

    def __init__(self, feed, content: Content, now: float):
        self._engine = feed._engine
        self.hash = self._engine._newHash()
        self.content = content
        self.created = self.modified = now
        self.version = 1
        self._feed = feed

    @_operation
    def delete(self):
        self._feed._unstage(self)


@implementer(IFeed)
class Feed(_Resource):
    """A feed of any type; the type decides how L{_route} picks joins."""

    def __init__(self, domain: Domain, name, type, title, license, isDefault=False, backlog=None, backlogAge=None):
        engine = domain._engine
        self._engine = engine
        self._domain = domain
        self.hash = engine._newHash()
        self.name = name
        self.type = type
        self.title = title
        self.license = license
        self.domain = domain.name
        self.isDefault = isDefault
        self.dropped = 0
        self.created = self.modified = engine._clock.seconds()
        self.version = 1
        self._deleted = False
        self._joins: Dict[Join, None] = {}
        self._pipeJoins: Dict[Pipe, int] = {}
        self._shared = 0  # pipes with more than one join onto this feed
        self._staged: Dict[str, StagedContent] = {}
        self._stagedBytes = 0
        self._fan: Optional[_Fan] = None
        if type in _ROTATING:
            self._router = None
            self._rotation = Rotation(
                engine._clock,
                engine._feedBacklog if backlog is None else backlog,
                engine._backlogAge if backlogAge is None else backlogAge,
                self._dropFromBacklog,
            )
        else:
            self._router = ROUTERS[type]()
            self._rotation = None

    def __repr__(self):
        return f"<Feed {self.name or self.hash} ({self.type}) in {self.domain!r}>"

    def _checkLive(self):
        if self._deleted:
            raise NoSuchResource("The feed was deleted.")

    def _eventHeaders(self):
        return {"hash": self.hash, "name": self.name or "", "type": self.type, "domain": self.domain}

    def _dropFromBacklog(self, n):
        self.dropped += n
        engine = self._engine
        engine._countDropped(n)
        if not self._deleted:
            # The count is in the feed's document. (A backlog deleted with
            # its feed is counted, not warned about.)
            self.version += 1
            self.modified = engine._clock.seconds()
            engine._feedDrops.count(self.hash, n, feed=self.name or self.hash, domain=self.domain, dropped=self.dropped)

    # -- joins --

    def _addJoin(self, join):
        self._joins[join] = None
        count = self._pipeJoins.get(join.pipe, 0) + 1
        self._pipeJoins[join.pipe] = count
        if count == 2:
            self._shared += 1
        if self._router is not None:
            self._router.add(join)
        else:
            self._rotation.add(join)

    def _removeJoin(self, join):
        if self._joins.pop(join, _MISSING) is _MISSING:
            return
        count = self._pipeJoins[join.pipe] - 1
        if count:
            self._pipeJoins[join.pipe] = count
        else:
            del self._pipeJoins[join.pipe]
        if count == 1:
            self._shared -= 1
        if self._router is not None:
            self._router.remove(join)
        else:
            self._rotation.remove(join)

    def _drainFor(self, join) -> int:
        """Give a new or newly ready join what the backlog holds for it."""
        if self._rotation is None or self._deleted:
            return 0
        return self._rotation.drainFor(join, self._engine._clock.seconds())

    # -- routing --

    def _route(self, message, now) -> int:
        """Route one message (its C{feed} already set); return the deliveries."""
        if self._rotation is not None:
            return self._rotate(message, now)
        fan = self._fan
        if fan is not None and fan.listeners:
            fan.messages.append(message)
            if not fan._queued:
                fan._queued = True
                self._engine._pending.append(fan)
        delivered = 0
        joins = self._router.match(message)
        if self._shared:
            seen = set()
            for join in joins:
                pipe = join.pipe
                if pipe in seen or (join.predicate is not None and not _accepts(join, message)):
                    continue
                seen.add(pipe)
                pipe._arrive(message, now)
                delivered += 1
        else:
            for join in joins:
                if join.predicate is not None and not _accepts(join, message):
                    continue
                join.pipe._arrive(message, now)
                delivered += 1
        if self.isDefault:
            target = self._domain._feeds.get(message.address)
            if target is not None and target._rotation is not None:
                delivered += target._rotate(message, now)
        return delivered

    def _rotate(self, message, now) -> int:
        rotation = self._rotation
        join = rotation.pick(message)
        if join is not None:
            join.pipe._arrive(message, now)
            return 1
        rotation.keep(message, now)
        return 0

    # -- IFeed --

    @_operation
    def update(self, title=None, license=None):
        self._checkLive()
        if self.isDefault:
            raise Forbidden("The default feed can't be changed.")
        if title is not None:
            _checkText(title, "title")
        if license is not None:
            _checkText(license, "license")
        if title is not None:
            self.title = title
        if license is not None:
            self.license = license
        self._touch()
        return self

    @_operation
    def delete(self):
        if self.isDefault:
            raise Forbidden("The default feed can't be deleted.")
        if not self._deleted:
            self._destroy()

    def _destroy(self):
        self._deleted = True
        for join in list(self._joins):
            join._detach()
        for staged in list(self._staged.values()):
            self._unstage(staged)
        if self._rotation is not None:
            lost = self._rotation.stop()
            if lost:
                self._dropFromBacklog(lost)
        if self._fan is not None:
            self._fan.closing = True
            self._engine._notify(self._fan)
        self._domain._removeFeed(self)
        self._engine.log.debug("Feed {hash} deleted", hash=self.hash)
        self._domain._emit("feed", "deleted", self._eventHeaders())

    @_operation
    def publish(self, messages):
        self._checkLive()
        if self.type == "system":
            raise Forbidden("Only the server publishes to a system feed.")
        messages = list(messages)
        for message in messages:
            if not isinstance(message, Message) or not isinstance(message.address, str):
                raise InvalidArgument("Only messages with a string address can be published.")
        engine = self._engine
        now = engine._clock.seconds()
        delivered = 0
        for message in messages:
            if message.feed is not self:
                if message.feed is None:
                    message.feed = self
                else:
                    message = dataclasses.replace(message, feed=self, cache={})
            delivered += self._route(message, now)
        engine.stats["published"] += len(messages)
        return delivered

    @_operation
    def stageContent(self, content):
        self._checkLive()
        if not isinstance(content, Content):
            raise InvalidArgument("Only a Content can be staged.")
        engine = self._engine
        which = f"The feed {self.name!r}" if self.name is not None else "This feed"
        if len(self._staged) >= engine._stageCount:
            raise LimitReached(
                f"{which} already keeps {len(self._staged)} staged contents that no message has claimed, "
                "as many as it may: publish or delete some, or wait until they expire."
            )
        if self._stagedBytes + content.length > engine._stageBytes:
            raise LimitReached(
                f"{which} can't keep {content.length} more bytes of staged contents: with the "
                f"{self._stagedBytes} bytes that no message has claimed yet, that is more than the "
                f"{engine._stageBytes} it may keep; publish or delete some, or wait until they expire."
            )
        staged = StagedContent(self, content, engine._clock.seconds())
        self._staged[staged.hash] = staged
        self._stagedBytes += content.length
        engine._registry[staged.hash] = staged
        engine._keepStaged(staged)
        return staged

    @_operation
    def claimContent(self, hash):
        self._checkLive()
        staged = self._staged.get(hash) if isinstance(hash, str) else None
        if staged is None:
            other = self._engine._registry.get(hash) if isinstance(hash, str) else None
            if isinstance(other, StagedContent):
                raise Forbidden("That content was staged on another feed.")
            raise ContentGone("That content was already published or never existed.")
        self._unstage(staged)
        if staged.created + self._engine._stageTTL <= self._engine._clock.seconds():
            # Due, and its timer has not run yet.
            raise ContentGone("That content expired before a message claimed it.")
        return staged.content

    def _unstage(self, staged):
        """Forget a staged content (claimed, deleted, or its feed is going)."""
        if self._staged.pop(staged.hash, None) is staged:
            self._stagedBytes -= staged.content.length
            self._engine._registry.pop(staged.hash, None)
            self._engine._forgetStaged(staged)

    @_operation
    def listJoins(self):
        self._checkLive()
        return list(self._joins)

    @_operation
    def listen(self, listener):
        self._checkLive()
        if self.type != "fanout":
            raise Forbidden("Only a fanout feed takes listeners.")
        if not callable(listener):
            raise InvalidArgument("A listener must be callable.")
        if self._fan is None:
            self._fan = _Fan(self)
        handle = Listening(self._fan, listener)
        self._fan.listeners[handle] = None
        return handle


_MISSING = object()
#: The held messages of a pipe that never held one.
_NO_ORDER = ()


class _Fan:
    """
    A fanout feed's listeners, and the messages routed to them by the
    operation under way (handed when it ends, like a pipe's).
    """

    __slots__ = ("feed", "listeners", "messages", "closing", "_queued")

    def __init__(self, feed):
        self.feed = feed
        self.listeners: Dict[Listening, None] = {}
        self.messages = []
        self.closing = False
        self._queued = False

    def _fire(self):
        messages, self.messages = self.messages, []
        listeners = self.listeners
        for message in messages:
            # Listening.stop() may run during the loop: it clears .listener.
            for handle in list(listeners):
                listener = handle.listener
                if listener is None:
                    continue
                try:
                    listener(message)
                except Exception:
                    log.failure("A feed listener failed", feed=self.feed.hash)
        if self.closing:
            handles = list(listeners)
            listeners.clear()
            for handle in handles:
                handle._end(True)


class Listening:
    """The handle of a feed's listener (see L{Feed.listen})."""

    __slots__ = ("_fan", "listener", "ended")

    def __init__(self, fan, listener):
        self._fan = fan
        self.listener = listener
        self.ended = Deferred()

    def _end(self, deleted: bool):
        self.listener = None
        if not self.ended.called:
            self.ended.callback(deleted)

    def stop(self):
        """Hand nothing more to the listener."""
        if self._fan.listeners.pop(self, _MISSING) is not _MISSING:
            self._end(False)


@implementer(IJoin)
class Join:
    """A pipe's join onto a feed."""

    version = 1

    def __init__(self, pipe, feed, address, headers, predicate, isDefault=False):
        engine = pipe._engine
        self._engine = engine
        self.hash = engine._newHash()
        self.pipe = pipe
        self.feed = feed
        self.address = address
        self.headers = headers
        self.predicate = predicate
        self.isDefault = isDefault
        self.created = self.modified = engine._clock.seconds()
        self._deleted = False
        selector = tuple(sorted((k, v) for k, v in headers.items() if k != "x-match"))
        self._selector = selector
        self._matchAny = headers.get("x-match") == "any"
        self._key = None if predicate is not None else (feed, address, tuple(sorted(headers.items())))
        self._words = None
        if feed.type in ("topic", "system") or (feed.type in _ROTATING and address not in _ANY_ADDRESS):
            self._words = parsePattern(address)

    def __repr__(self):
        return f"<Join {self.hash} {self.pipe!r} -> {self.feed!r} {self.address!r}>"

    def _takes(self, message) -> bool:
        """A rotator or service feed's test: address, then predicate."""
        if self._words is not None and not topicMatches(self._words, splitWords(message.address)):
            return False
        return self.predicate is None or _accepts(self, message)

    def _eventHeaders(self):
        return {
            "hash": self.hash,
            "name": self.address,
            "feed": self.feed.hash,
            "pipe": self.pipe.hash,
        }

    def _emit(self, event):
        headers = self._eventHeaders()
        pipeDomain, feedDomain = self.pipe._domain, self.feed._domain
        pipeDomain._emit("join", event, headers)
        if feedDomain is not pipeDomain:
            feedDomain._emit("join", event, headers)

    def _detach(self):
        """Unlink the join from its pipe and feed (a service feed left with no join goes)."""
        if self._deleted:
            return
        self._deleted = True
        pipe, feed = self.pipe, self.feed
        feed._removeJoin(self)
        pipe._joins.pop(self, None)
        if self._key is not None and pipe._joinKeys.get(self._key) is self:
            del pipe._joinKeys[self._key]
        if not pipe._deleted:
            pipe._touch()
        self._engine._registry.pop(self.hash, None)
        self._emit("deleted")
        if feed.type == "service" and not feed._joins and not feed._deleted:
            feed._destroy()

    @_operation
    def delete(self):
        if self.isDefault:
            raise Forbidden("A pipe's default join can't be deleted.")
        self._detach()


@implementer(IHeldMessage)
class HeldMessage:
    """
    A message as one pipe holds it (the L{Message} itself is shared).

    A content deleted from it (L{HeldContent.delete}) leaves this held
    message only: C{contents} is then a tuple of its own, and C{_trim}
    holds the indices in the message of the contents it still has
    (content hashes keep their index, so the others keep their URIs) and
    the time of the last deletion. Until then C{contents} I{is} the
    message's, and C{_trim} is unset.
    """

    __slots__ = ("hash", "message", "pipe", "sequence", "next", "created", "contents", "_trim")

    def __init__(self, hash, message, pipe, sequence, next, created):
        self.hash = hash
        self.message = message
        self.pipe = pipe
        self.sequence = sequence
        self.next = next
        self.created = created
        self.contents = message.contents

    @property
    def version(self):
        contents, everything = self.contents, self.message.contents
        return 1 if contents is everything else 1 + len(everything) - len(contents)

    @property
    def modified(self):
        return self.created if self.contents is self.message.contents else self._trim[1]

    @property
    def contentHashes(self):
        h = self.hash
        if self.contents is self.message.contents:
            return tuple(f"{h}.{i}" for i in range(len(self.contents)))
        return tuple(f"{h}.{i}" for i in self._trim[0])

    def _holds(self, index: int) -> bool:
        """Whether the message's content C{index} is still part of this held message."""
        if self.contents is self.message.contents:
            return index < len(self.contents)
        return index in self._trim[0]

    def _removeContent(self, index: int, now: float) -> None:
        if not self._holds(index):
            return
        everything = self.message.contents
        kept = range(len(everything)) if self.contents is everything else self._trim[0]
        kept = tuple(i for i in kept if i != index)
        self._trim = (kept, now)
        self.contents = tuple(everything[i] for i in kept)

    def __repr__(self):
        return f"<HeldMessage {self.sequence} {self.message.address!r} in {self.pipe.hash}>"


@implementer(IContent)
class HeldContent:
    """One content of a held message, found through its derived hash."""

    __slots__ = ("hash", "content", "created", "_held", "_index")
    version = 1

    def __init__(self, held, index):
        self.hash = f"{held.hash}.{index}"
        self.content = held.message.contents[index]
        self.created = held.created
        self._held = held
        self._index = index

    @property
    def modified(self):
        return self.created

    @property
    def _engine(self):
        return self._held.pipe._engine

    @_operation
    def delete(self):
        held = self._held
        if held.pipe._held.get(held.hash) is held:
            held._removeContent(self._index, self._engine._clock.seconds())


@implementer(IAsynclet)
class Asynclet:
    """
    The slot of the next message of a pipe (made on lookup: the registry
    maps a pending asynclet's hash to its pipe, so an arrival allocates
    no asynclet object).
    """

    __slots__ = ("hash", "pipe", "created")
    version = 1

    def __init__(self, hash, pipe, created):
        self.hash = hash
        self.pipe = pipe
        self.created = created

    @property
    def modified(self):
        return self.created


class Consumption:
    """The handle of a pipe's consumer (see L{Pipe.consume})."""

    __slots__ = ("pipe", "consumer", "paused", "ended")

    def __init__(self, pipe, consumer):
        self.pipe = pipe
        self.consumer = consumer
        self.paused = False
        self.ended = Deferred()

    def _end(self, deleted: bool):
        if not self.ended.called:
            self.ended.callback(deleted)

    @property
    def active(self):
        return self.pipe._consumer is self

    def stop(self):
        """Detach the consumer; the held messages stay in the pipe."""
        if self.pipe._consumer is self:
            self.pipe._consumer = None
            self._end(False)

    def resume(self):
        """Deliver again after the consumer returned False."""
        if not self.paused or self.pipe._consumer is not self:
            return
        self.paused = False
        self.pipe._resume()


@implementer(IPipe)
class Pipe(_Resource):
    """A pipe: held messages in arrival order, waiters, one consumer."""

    def __init__(self, domain: Domain, type: str, title: str):
        engine = domain._engine
        now = engine._clock.seconds()
        self._engine = engine
        self._domain = domain
        self.hash = self.name = engine._newHash()
        self.type = type
        self.title = title
        self.domain = domain.name
        self.created = self.modified = now
        self.version = 1
        self.dropped = 0
        self._ondemand = type == "ondemand"
        self._depth = engine._pipeDepth
        self._held: Dict[str, HeldMessage] = {}
        # The held messages in arrival order: a deque from the first
        # arrival on (an idle pipe, a browser's stream, costs no deque).
        self._order = _NO_ORDER
        self._sequence = 0
        self._joins: Dict[Join, None] = {}
        self._joinKeys: Dict[tuple, Join] = {}
        self._waiters: Dict[str, list] = {}
        self._waiting = 0
        self._consumer: Optional[Consumption] = None
        self._pumping = False
        self._queued = False
        self._deleted = False
        self.asynclet = engine._newHash()
        self._asyncletSince = now
        engine._registry[self.hash] = self
        engine._registry[self.asynclet] = self

    def __repr__(self):
        return f"<Pipe {self.hash} ({self.type}) in {self.domain!r}>"

    @property
    def consumed(self):
        return self._consumer is not None

    def _checkLive(self):
        if self._deleted:
            raise NoSuchResource("The pipe was deleted.")

    def _eventHeaders(self):
        return {"hash": self.hash, "name": self.name, "type": self.type, "domain": self.domain}

    def _attach(self, join):
        self._joins[join] = None
        if join._key is not None:
            self._joinKeys[join._key] = join
        join.feed._addJoin(join)
        self._engine._registry[join.hash] = join
        self._touch()

    # -- arrivals and readiness --

    def _ready(self) -> bool:
        """Whether a rotator or service feed may hand this pipe a message."""
        if not self._ondemand:
            return True
        if self._held:
            return False
        consumer = self._consumer
        return self._waiting > 0 or (consumer is not None and not consumer.paused)

    def _arrive(self, message, now):
        """Hold a routed message under the asynclet's hash; draw the next asynclet."""
        engine = self._engine
        hash = self.asynclet
        following = engine._drawHash()
        self._sequence += 1
        held = HeldMessage(hash, message, self, self._sequence, following, now)
        registry = engine._registry
        registry[hash] = held
        registry[following] = self
        self.asynclet = following
        self._asyncletSince = now
        order = self._order
        if order is _NO_ORDER:
            order = self._order = deque()
        elif len(order) >= self._depth:
            self._dropOldest()
        order.append(held)
        self._held[hash] = held
        self.modified = now
        self.version += 1
        engine.stats["delivered"] += 1
        if (self._waiting or self._consumer is not None) and not self._queued:
            self._queued = True
            engine._pending.append(self)

    def _dropOldest(self):
        held = self._order.popleft()
        del self._held[held.hash]
        self._engine._registry.pop(held.hash, None)
        self.dropped += 1
        engine = self._engine
        engine._countDropped(1)
        engine._pipeDrops.count(self.hash, 1, pipe=self.hash, domain=self.domain, dropped=self.dropped)

    def _pull(self):
        """An ondemand pipe that is ready takes a message from its rotator/service feeds."""
        if not self._ondemand:
            return
        for join in list(self._joins):
            if not self._ready():
                return
            if not join._deleted and join.feed._rotation is not None:
                join.feed._drainFor(join)

    def _fire(self):
        """Serve the waiters whose message arrived, then the consumer."""
        if self._deleted:
            return
        if self._waiters:
            current = self.asynclet
            for hash in [h for h in self._waiters if h != current]:
                waiters = self._waiters.pop(hash)
                self._waiting -= len(waiters)
                held = self._held.get(hash)
                for d in waiters:
                    if held is not None:
                        d.callback(held)
                    else:
                        d.errback(Failure(NoSuchResource("That message was dropped before it could be read.")))
        if self._consumer is not None:
            self._pump()

    def _pump(self):
        """
        Hand held messages to the consumer, oldest first, until paused or
        empty; each handed message is removed (this loop runs once per
        delivery to a stream pipe, so it is written out in full).
        """
        if self._pumping:
            return
        self._pumping = True
        engine = self._engine
        registry = engine._registry
        heldByHash = self._held  # the same dict for the pipe's life
        try:
            while not self._deleted and self._order:
                handle = self._consumer
                if handle is None or handle.paused:
                    break
                order = self._order
                held = order[0]
                try:
                    result = handle.consumer(held)
                except Exception:
                    engine.log.failure("A pipe consumer failed", pipe=self.hash)
                    result = None
                if result is False:
                    handle.paused = True
                    break
                # Remove it: the head, unless the consumer changed the pipe.
                if heldByHash.pop(held.hash, None) is not None:
                    if order[0] is held:
                        order.popleft()
                    else:
                        order.remove(held)
                    registry.pop(held.hash, None)
                    now = engine._now
                    self.modified = engine._clock.seconds() if now is None else now
                    self.version += 1
                if self._ondemand:
                    self._pull()
        finally:
            self._pumping = False

    def _resume(self):
        engine = self._engine
        engine._busy += 1
        try:
            self._pump()
            self._pull()
        finally:
            engine._busy -= 1
            if not engine._busy and engine._pending:
                engine._flush()

    def _cancelWaits(self):
        for waiters in list(self._waiters.values()):
            for d in list(waiters):
                d.cancel()

    def _destroy(self):
        self._deleted = True
        for join in list(self._joins):
            join._detach()
        registry = self._engine._registry
        for held in self._order:
            registry.pop(held.hash, None)
        self._order = _NO_ORDER
        self._held.clear()
        registry.pop(self.asynclet, None)
        registry.pop(self.hash, None)
        consumer, self._consumer = self._consumer, None
        waiters, self._waiters, self._waiting = self._waiters, {}, 0
        for ds in waiters.values():
            for d in ds:
                d.errback(Failure(NoSuchResource("The pipe was deleted.")))
        domain = self._domain
        if domain._pipes.pop(self.hash, None) is not None:
            domain._touch()
        self._engine.log.debug("Pipe {hash} deleted", hash=self.hash)
        domain._emit("pipe", "deleted", self._eventHeaders())
        if consumer is not None:
            consumer._end(True)

    # -- IPipe --

    @_operation
    def join(self, feed, address="*", headers=None, predicate=None):
        self._checkLive()
        if not isinstance(feed, Feed) or feed._engine is not self._engine:
            raise InvalidArgument("A pipe joins a feed of the same engine.")
        if feed._deleted:
            raise NoSuchResource("The feed was deleted.")
        if feed.isDefault:
            raise Forbidden("Nothing can join the default feed but the pipes' own default joins.")
        if self._ondemand and feed.type not in _ROTATING:
            raise Forbidden("An ondemand pipe can only join rotator and service feeds.")
        if not isinstance(address, str):
            raise InvalidArgument("A join address must be a string.")
        if headers is None:
            headers = {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidArgument("Join headers must map strings to strings.")
        if headers.get("x-match", "all") not in ("all", "any"):
            raise InvalidArgument("The x-match header must be 'all' or 'any'.")
        if predicate is not None and not callable(predicate):
            raise InvalidArgument("A join predicate must be callable.")
        headers = dict(headers)
        if predicate is None:
            existing = self._joinKeys.get((feed, address, tuple(sorted(headers.items()))))
            if existing is not None:
                return (existing, False)
        try:
            join = Join(self, feed, address, headers, predicate)
        except BadPattern as e:
            raise InvalidArgument(str(e))
        self._attach(join)
        join._emit("created")
        if feed._rotation is not None:
            feed._drainFor(join)
        return (join, True)

    @_operation
    def listJoins(self):
        self._checkLive()
        return list(self._joins)

    @_operation
    def listMessages(self):
        self._checkLive()
        return list(self._order)

    @_operation
    def wait(self, hash=None):
        self._checkLive()
        if hash is None:
            hash = self.asynclet
        held = self._held.get(hash) if isinstance(hash, str) else None
        if held is not None:
            return held
        if hash != self.asynclet:
            raise NoSuchResource("That message is not in this pipe.")

        def cancel(d):
            waiters = self._waiters.get(hash)
            if waiters is not None and d in waiters:
                waiters.remove(d)
                self._waiting -= 1
                if not waiters:
                    del self._waiters[hash]

        d = Deferred(cancel)
        self._waiters.setdefault(hash, []).append(d)
        self._waiting += 1
        self._pull()
        return d

    @_operation
    def remove(self, hash):
        self._checkLive()
        if not isinstance(hash, str) or hash not in self._held:
            return 0
        registry = self._engine._registry
        removed = 0
        while True:
            held = self._order.popleft()
            del self._held[held.hash]
            registry.pop(held.hash, None)
            removed += 1
            if held.hash == hash:
                break
        self._touch()
        self._pull()
        return removed

    @_operation
    def consume(self, consumer):
        self._checkLive()
        if not callable(consumer):
            raise InvalidArgument("A consumer must be callable.")
        if self._consumer is not None:
            raise Conflict("The pipe already has a consumer.")
        handle = self._consumer = Consumption(self, consumer)
        self._pump()
        self._pull()
        return handle

    @_operation
    def delete(self):
        if not self._deleted:
            self._destroy()
