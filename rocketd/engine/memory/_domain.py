"""
A domain: the namespace of feeds and pipes. It creates them (and each
pipe's default join), names its feeds, and publishes the lifecycle events
of its feeds, pipes and joins into its system feeds.
"""

from __future__ import annotations

import re
from typing import Dict

from zope.interface import implementer

from rocketd.engine.memory._core import checkText, operation
from rocketd.engine.memory._feed import Feed
from rocketd.engine.memory._join import Join
from rocketd.engine.memory._pipe import Pipe
from rocketd.engine.message import Message
from rocketd.errors import Conflict, InvalidArgument, InvalidName, NoSuchResource
from rocketd.interfaces import DEFAULT_FEED, FEED_TYPES, PIPE_TYPES, IDomain

_FEED_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")


@implementer(IDomain)
class Domain:
    """
    A domain: its feeds (the default one first) and its pipes.

    Engine-internal: C{core}, C{deleted}, C{feedsByName} (the named feeds,
    read by the default feed to pass a message on to a service feed),
    L{touch}, L{removeFeed}, L{removePipe}, L{emit}, L{destroy}, L{stop}.
    """

    def __init__(self, core, name: str, title: str):
        self.core = core
        self.name = name
        self.title = title
        self.created = self.modified = core.clock.seconds()
        self.version = 1
        self.deleted = False
        self.feedsByName: Dict[str, Feed] = {}
        self._allFeeds: Dict[str, Feed] = {}
        self._systemFeeds: Dict[str, Feed] = {}
        self._pipes: Dict[str, Pipe] = {}
        self.defaultFeed = Feed(self, DEFAULT_FEED, "direct", "Default feed", "", isDefault=True)
        self._addFeed(self.defaultFeed)

    def __repr__(self):
        return f"<Domain {self.name!r}>"

    def touch(self):
        self.modified = self.core.clock.seconds()
        self.version += 1

    def _checkLive(self):
        if self.deleted:
            raise NoSuchResource(f"The domain {self.name!r} was deleted.")

    def _addFeed(self, feed):
        self.core.registry[feed.hash] = feed
        self._allFeeds[feed.hash] = feed
        if feed.name is not None:
            self.feedsByName[feed.name] = feed
        if feed.type == "system":
            self._systemFeeds[feed.hash] = feed
        self.touch()

    def removeFeed(self, feed):
        """A feed of the domain is gone."""
        self.core.registry.pop(feed.hash, None)
        self._allFeeds.pop(feed.hash, None)
        self._systemFeeds.pop(feed.hash, None)
        if feed.name is not None and self.feedsByName.get(feed.name) is feed:
            del self.feedsByName[feed.name]
        self.touch()

    def removePipe(self, pipe):
        """A pipe of the domain is gone."""
        if self._pipes.pop(pipe.hash, None) is not None:
            self.touch()

    def emit(self, kind: str, event: str, headers: dict):
        """Publish a lifecycle event into this domain's system feeds."""
        if self.deleted or not self._systemFeeds:
            return
        now = self.core.clock.seconds()
        for feed in list(self._systemFeeds.values()):
            message = Message(address=f"{kind}.{event}", headers=dict(headers), feed=feed)
            feed.route(message, now)

    def destroy(self):
        """The domain is deleted: so are its pipes and feeds."""
        self.deleted = True
        for pipe in list(self._pipes.values()):
            pipe.destroy()
        for feed in list(self._allFeeds.values()):
            feed.destroy()

    def stop(self):
        """The engine stops: cancel the pipes' waits and the feeds' timers."""
        for pipe in list(self._pipes.values()):
            pipe.cancelWaits()
        for feed in self._allFeeds.values():
            feed.stop()

    # -- IDomain --

    @operation
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
            existing = self.feedsByName.get(name)
            if existing is not None:
                if type is not None and existing.type != type:
                    raise Conflict(f"The feed {name!r} exists with type {existing.type!r}.")
                return (existing, False)
        if type is None:
            type = "topic"
        checkText(title, "title")
        checkText(license, "license")
        if backlog is not None and (isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0):
            raise InvalidArgument("A feed backlog must be a non-negative integer.")
        if backlogAge is not None and (
            isinstance(backlogAge, bool) or not isinstance(backlogAge, (int, float)) or backlogAge < 0
        ):
            raise InvalidArgument("A feed backlog age must be a non-negative number of seconds.")
        feed = Feed(self, name, type, title, license, backlog=backlog, backlogAge=backlogAge)
        self._addFeed(feed)
        self.core.log.debug("Feed {hash} ({type}) created in {domain}", hash=feed.hash, type=type, domain=self.name)
        self.emit("feed", "created", feed.eventHeaders())
        return (feed, True)

    @operation
    def getFeed(self, name):
        self._checkLive()
        feed = self.feedsByName.get(name) if isinstance(name, str) else None
        if feed is None:
            raise NoSuchResource(f"There is no feed {name!r}.")
        return feed

    @operation
    def listFeeds(self):
        self._checkLive()
        return list(self.feedsByName.values())

    @operation
    def createPipe(self, type="fifo", title=""):
        self._checkLive()
        if type not in PIPE_TYPES:
            raise InvalidArgument(f"Unknown pipe type {type!r}; the types are {', '.join(PIPE_TYPES)}.")
        checkText(title, "title")
        pipe = Pipe(self, type, title)
        self._pipes[pipe.hash] = pipe
        self.touch()
        join = Join(pipe, self.defaultFeed, pipe.name, {}, None, isDefault=True)
        pipe.attach(join)
        self.core.log.debug("Pipe {hash} ({type}) created in {domain}", hash=pipe.hash, type=type, domain=self.name)
        self.emit("pipe", "created", pipe.eventHeaders())
        join.emit("created")
        return pipe

    @operation
    def listPipes(self):
        self._checkLive()
        return list(self._pipes.values())
