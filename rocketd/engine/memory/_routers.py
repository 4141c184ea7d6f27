"""
Join indexes for the feed types that copy a message to every matching join
(fanout, direct, topic, headers, system).

A router answers C{match(message)} with an iterable of the joins whose
address/headers rules take the message, visiting only those (or, for
headers, the joins that share at least one header with the message). The
join's predicate is applied by the feed afterwards. The iterable may be a
live view: the caller must not add or remove joins while iterating it.

A router reads a join only through the L{Routed} protocol.
"""

from typing import Dict, Iterable, Optional, Protocol

from rocketd.engine._topic import TopicTrie, splitWords

_MISSING = object()


class Routed(Protocol):
    """A join as a router sees it (read-only, fixed for the join's life)."""

    #: The join's address (a direct feed's key).
    address: str
    #: The parsed topic pattern (its words; topic and system feeds), else None.
    words: Optional[list]
    #: The header items to match, sorted, C{x-match} left out.
    selector: tuple
    #: True when one matching header item is enough (C{x-match: any}).
    matchAny: bool


class FanoutRouter:
    """Every join takes every message."""

    def __init__(self):
        self._joins: Dict[object, None] = {}

    def add(self, join):
        self._joins[join] = None

    def remove(self, join):
        self._joins.pop(join, None)

    def match(self, message) -> Iterable:
        return self._joins


class DirectRouter:
    """
    Joins whose address equals the message's, through a dict by address.
    An address with one join (every pipe's default join is alone on its
    pipe's name) keeps it in a 1-tuple; a dict holds two and more.
    """

    def __init__(self):
        self._index: Dict[str, object] = {}

    def add(self, join):
        index = self._index
        bucket = index.get(join.address)
        if bucket is None:
            index[join.address] = (join,)
        elif type(bucket) is tuple:
            if bucket[0] is not join:
                index[join.address] = {bucket[0]: None, join: None}
        else:
            bucket[join] = None

    def remove(self, join):
        bucket = self._index.get(join.address)
        if bucket is None:
            return
        if type(bucket) is tuple:
            if bucket[0] is join:
                del self._index[join.address]
            return
        bucket.pop(join, None)
        if not bucket:
            del self._index[join.address]

    def match(self, message) -> Iterable:
        return self._index.get(message.address, ())


class TopicRouter:
    """Topic patterns (AMQP rules) through a trie."""

    def __init__(self):
        self._trie = TopicTrie()

    def add(self, join):
        self._trie.add(join.words, join)

    def remove(self, join):
        self._trie.remove(join.words, join)

    def match(self, message) -> Iterable:
        return self._trie.match(splitWords(message.address))


def headersMatch(selector, matchAny, headers) -> bool:
    """
    @param selector: a tuple of (name, value) the join asks for.
    @param matchAny: True when one equal header is enough.
    @param headers: the message's headers.
    """
    if matchAny:
        for name, value in selector:
            if headers.get(name, _MISSING) == value:
                return True
        return False
    for name, value in selector:
        if headers.get(name, _MISSING) != value:
            return False
    return True


class HeadersRouter:
    """
    Header selectors. Each join is indexed under header items it needs: an
    all-match join under its first item (a message lacking it can't match),
    an any-match join under each item. A message only tests the joins
    indexed under one of its own header items, plus the all-match joins
    with an empty selector, which take everything. An any-match join with
    an empty selector takes nothing.
    """

    def __init__(self):
        self._index: Dict[tuple, Dict[object, None]] = {}
        self._everything: Dict[object, None] = {}

    def _keys(self, join):
        if not join.selector:
            return ()
        if join.matchAny:
            return join.selector
        return join.selector[:1]

    def add(self, join):
        if not join.selector:
            if not join.matchAny:
                self._everything[join] = None
            return
        for key in self._keys(join):
            self._index.setdefault(key, {})[join] = None

    def remove(self, join):
        self._everything.pop(join, None)
        for key in self._keys(join):
            bucket = self._index.get(key)
            if bucket is not None:
                bucket.pop(join, None)
                if not bucket:
                    del self._index[key]

    def match(self, message) -> Iterable:
        headers = message.headers
        out = dict(self._everything)
        index = self._index
        if not index:
            return out
        for item in headers.items():
            try:
                bucket = index.get(item)
            except TypeError:  # an unhashable header value matches nothing
                continue
            if bucket:
                for join in bucket:
                    if join not in out and (join.matchAny or headersMatch(join.selector, False, headers)):
                        out[join] = None
        return out


#: The router class of each copying feed type.
ROUTERS = {
    "fanout": FanoutRouter,
    "direct": DirectRouter,
    "topic": TopicRouter,
    "system": TopicRouter,
    "headers": HeadersRouter,
}
