"""
A join: a pipe's subscription to a feed. It checks a pipe's join request,
keeps what the routers and the rotation match on (the parsed topic
pattern, the header selector), links itself into its pipe and feed, and
publishes its lifecycle events.
"""

from __future__ import annotations

from zope.interface import implementer

from rocketd.engine._topic import BadPattern, parsePattern, splitWords, topicMatches
from rocketd.engine.memory._core import ANY_ADDRESS, ROTATING, operation
from rocketd.engine.memory._feed import Feed
from rocketd.engine._joins import checkJoinRequest
from rocketd.errors import Forbidden, InvalidArgument, NoSuchResource
from rocketd.interfaces import IJoin


def checkJoin(pipe, feed, address, headers, predicate) -> dict:
    """
    Check a pipe's request to join a feed (L{rocketd.interfaces.IPipe.join}).

    @return: a copy of the headers.
    """
    if not isinstance(feed, Feed) or feed.core is not pipe.core:
        raise InvalidArgument("A pipe joins a feed of the same engine.")
    if feed.deleted:
        raise NoSuchResource("The feed was deleted.")
    return checkJoinRequest(pipe, feed, address, headers, predicate)


def joinKey(feed, address, headers, predicate):
    """What makes two joins of a pipe the same join (predicates compare by value)."""
    return (feed, address, tuple(sorted(headers.items())), predicate)


def newJoin(pipe, feed, address, headers, predicate, isDefault=False):
    """A new join (not linked yet); a bad topic pattern is L{InvalidArgument}."""
    try:
        return Join(pipe, feed, address, headers, predicate, isDefault)
    except BadPattern as e:
        raise InvalidArgument(str(e))


@implementer(IJoin)
class Join:
    """
    A pipe's join onto a feed.

    Engine-internal: C{core}, C{deleted}, C{key} (see L{joinKey}), the
    routers' C{words}, C{selector} and C{matchAny} (see
    L{rocketd.engine.memory._routers}), C{regex} (the predicate's compiled
    expression, None without one: what routing applies), L{takes} (the
    rotation's), L{emit}, L{detach}.
    """

    version = 1

    def __init__(self, pipe, feed, address, headers, predicate, isDefault=False):
        core = pipe.core
        self.core = core
        self.hash = core.drawHash()
        self.pipe = pipe
        self.feed = feed
        self.address = address
        self.headers = headers
        self.predicate = predicate
        self.isDefault = isDefault
        self.created = self.modified = core.clock.seconds()
        self.deleted = False
        self.selector = tuple(sorted((k, v) for k, v in headers.items() if k != "x-match"))
        self.matchAny = headers.get("x-match") == "any"
        self.regex = None if predicate is None else predicate.regex
        self.key = joinKey(feed, address, headers, predicate)
        self.words = None
        if feed.type in ("topic", "system") or (feed.type in ROTATING and address not in ANY_ADDRESS):
            self.words = parsePattern(address)

    def __repr__(self):
        return f"<Join {self.hash} {self.pipe!r} -> {self.feed!r} {self.address!r}>"

    def takes(self, message) -> bool:
        """A rotator or service feed's test: address, then predicate."""
        if self.words is not None and not topicMatches(self.words, splitWords(message.address)):
            return False
        return self.regex is None or self.regex.fullmatch(message.address) is not None

    def _eventHeaders(self):
        return {
            "hash": self.hash,
            "name": self.address,
            "feed": self.feed.hash,
            "pipe": self.pipe.hash,
        }

    def emit(self, event):
        """Publish a lifecycle event into the system feeds of the pipe's and the feed's domains."""
        headers = self._eventHeaders()
        pipeDomain, feedDomain = self.pipe.home, self.feed.home
        pipeDomain.emit("join", event, headers)
        if feedDomain is not pipeDomain:
            feedDomain.emit("join", event, headers)

    def detach(self):
        """Unlink the join from its pipe and feed (a service feed left with no join goes)."""
        if self.deleted:
            return
        self.deleted = True
        feed = self.feed
        feed.removeJoin(self)
        self.pipe.forgetJoin(self)
        self.core.registry.pop(self.hash, None)
        self.emit("deleted")
        feed.reap()

    @operation
    def delete(self):
        if self.isDefault:
            raise Forbidden("A pipe's default join can't be deleted.")
        self.detach()
