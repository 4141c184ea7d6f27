"""
Staged contents: contents put on a feed ahead of the message that will
claim them (RestMS's two-step publish of a large content).

A L{Shelf} holds one feed's staged contents and enforces its limits; the
engine's L{Staging} keeps every staged content of the engine in one
oldest-first order with one timer, due when the oldest expires (they all
expire after the same time).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict

from zope.interface import implementer

from rocketd.engine.memory._core import operation
from rocketd.engine.message import Content
from rocketd.errors import ContentGone, Forbidden, InvalidArgument, LimitReached
from rocketd.interfaces import IContent


@implementer(IContent)
class StagedContent:
    """A content staged on a feed, waiting for a message to claim it."""

    def __init__(self, shelf, content: Content, now: float):
        self.core = shelf.core
        self.hash = self.core.drawHash()
        self.content = content
        self.created = self.modified = now
        self.version = 1
        self._shelf = shelf

    @operation
    def delete(self):
        self._shelf.unstage(self)


class Staging:
    """
    The engine's limits on staged contents and their expiry (engine-internal).

    @ivar ttl: how many seconds a staged content that no message has
        claimed is kept.
    @ivar count: how many such contents a feed keeps at most.
    @ivar bytes: how many bytes of such contents a feed keeps at most.
    """

    def __init__(self, core, ttl: float, count: int, bytes: int):
        self.core = core
        self.ttl = ttl
        self.count = count
        self.bytes = bytes
        #: Every staged content of the engine, oldest first, and the timer
        #: of the oldest's expiry.
        self._order: "OrderedDict[str, StagedContent]" = OrderedDict()
        self._timer = None

    def keep(self, staged):
        """Keep a new staged content until it expires."""
        self._order[staged.hash] = staged
        if self._timer is None:
            self._timer = self.core.clock.callLater(self.ttl, self._expire)

    def forget(self, staged):
        """A staged content is gone (claimed, deleted, expired, its feed deleted)."""
        order = self._order
        order.pop(staged.hash, None)
        if not order:
            self._cancel()

    def expired(self, staged) -> bool:
        """Whether a staged content is due (its timer may not have run yet)."""
        return staged.created + self.ttl <= self.core.clock.seconds()

    def stop(self):
        self._cancel()

    def _cancel(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _expire(self):
        """Drop the staged contents that are due; wait for the next one."""
        self._timer = None
        order = self._order
        clock = self.core.clock
        now = clock.seconds()
        expired = 0
        while order:
            staged = next(iter(order.values()))
            due = staged.created + self.ttl
            if due > now:
                self._timer = clock.callLater(due - now, self._expire)
                break
            staged._shelf.unstage(staged)
            expired += 1
        if expired:
            self.core.log.debug("{count} staged contents expired", count=expired)


class Shelf:
    """One feed's staged contents (engine-internal: the feed's C{shelf})."""

    def __init__(self, core, feed):
        self.core = core
        self._feed = feed
        self._staged: Dict[str, StagedContent] = {}
        self._bytes = 0

    def stage(self, content) -> StagedContent:
        if not isinstance(content, Content):
            raise InvalidArgument("Only a Content can be staged.")
        core = self.core
        staging = core.staging
        name = self._feed.name
        which = f"The feed {name!r}" if name is not None else "This feed"
        if len(self._staged) >= staging.count:
            raise LimitReached(
                f"{which} already keeps {len(self._staged)} staged contents that no message has claimed, "
                "as many as it may: publish or delete some, or wait until they expire."
            )
        if self._bytes + content.length > staging.bytes:
            raise LimitReached(
                f"{which} can't keep {content.length} more bytes of staged contents: with the "
                f"{self._bytes} bytes that no message has claimed yet, that is more than the "
                f"{staging.bytes} it may keep; publish or delete some, or wait until they expire."
            )
        staged = StagedContent(self, content, core.clock.seconds())
        self._staged[staged.hash] = staged
        self._bytes += content.length
        core.registry[staged.hash] = staged
        staging.keep(staged)
        return staged

    def claim(self, hash) -> Content:
        staged = self._staged.get(hash) if isinstance(hash, str) else None
        if staged is None:
            other = self.core.registry.get(hash) if isinstance(hash, str) else None
            if isinstance(other, StagedContent):
                raise Forbidden("That content was staged on another feed.")
            raise ContentGone("That content was already published or never existed.")
        self.unstage(staged)
        if self.core.staging.expired(staged):
            # Due, and its timer has not run yet.
            raise ContentGone("That content expired before a message claimed it.")
        return staged.content

    def unstage(self, staged):
        """Forget a staged content (claimed, deleted, or its feed is going)."""
        if self._staged.pop(staged.hash, None) is staged:
            self._bytes -= staged.content.length
            self.core.registry.pop(staged.hash, None)
            self.core.staging.forget(staged)

    def clear(self):
        """The feed is going: forget every staged content."""
        for staged in list(self._staged.values()):
            self.unstage(staged)
