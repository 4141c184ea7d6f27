"""
A message as a pipe holds it: L{HeldMessage} (the shared L{Message} and
this pipe's sequence, hash and remaining contents), L{HeldContent} (one of
its contents, found by a derived hash) and L{Asynclet} (the slot of the
pipe's next message).
"""

from __future__ import annotations

from zope.interface import implementer

from rocketd.engine.memory._core import operation
from rocketd.interfaces import IAsynclet, IContent, IHeldMessage


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

    Engine-internal: L{holds} (whether a content index is still here).
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

    def holds(self, index: int) -> bool:
        """Whether the message's content C{index} is still part of this held message."""
        if self.contents is self.message.contents:
            return index < len(self.contents)
        return index in self._trim[0]

    def _removeContent(self, index: int, now: float) -> None:
        if not self.holds(index):
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
    def core(self):
        return self._held.pipe.core

    @operation
    def delete(self):
        held = self._held
        if held.pipe.holds(held):
            held._removeContent(self._index, self.core.clock.seconds())


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

