"""
Join predicates: what a join may test on a message after its feed type's
rules (L{rocketd.interfaces.IPipe.join}'s C{predicate}).

A predicate is a value, not code: an engine that spans processes keeps it
in its metadata, sends it to the node that routes, compares it to find an
identical join, and evaluates it there. So the contract accepts only the
predicates of this module, never an arbitrary callable. There is one:
L{AddressMatches}. A new kind is a new frozen value here with its
serialised form, and every engine's support for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rocketd.errors import InvalidArgument

#: The longest pattern an L{AddressMatches} takes (characters).
MAX_PATTERN_LENGTH = 4096

#: The C{type} of L{AddressMatches}'s serialised form.
ADDRESS_MATCHES = "addressMatches"


@dataclass(frozen=True)
class AddressMatches:
    """
    Takes the messages whose whole address matches a regular expression.

    The pattern is Python C{re} syntax, no flags, applied with
    C{fullmatch} to the message's address: C{chat/.*} takes C{chat/a} and
    not C{xchat/a}, C{a|b} takes C{a} and C{b} only, and C{$} never stops
    before a trailing newline. Two predicates with the same pattern are
    equal (and hash alike): a join asked again with an equal predicate is
    the same join.

    @ivar pattern: the expression's source (str).
    @ivar regex: the compiled expression (not part of the value).
    @raise InvalidArgument: from the constructor, for a pattern that is
        not a string, is longer than L{MAX_PATTERN_LENGTH}, or does not
        compile.
    """

    pattern: str
    regex: "re.Pattern[str]" = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        pattern = self.pattern
        if not isinstance(pattern, str):
            raise InvalidArgument("An address pattern must be a string.")
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidArgument(f"An address pattern is at most {MAX_PATTERN_LENGTH} characters.")
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise InvalidArgument(f"The address pattern {pattern!r} is not valid: {e}.") from e
        except (OverflowError, RecursionError, ValueError, TypeError) as e:
            raise InvalidArgument(f"The address pattern {pattern!r} is not acceptable.") from e
        object.__setattr__(self, "regex", regex)

    def __call__(self, message) -> bool:
        """Whether the predicate takes the message (by its C{address})."""
        return self.regex.fullmatch(message.address) is not None

    def toJSON(self) -> dict:
        """@return: the serialised form, C{{"type": "addressMatches", "pattern": ...}}."""
        return {"type": ADDRESS_MATCHES, "pattern": self.pattern}

    @classmethod
    def fromJSON(cls, data) -> "AddressMatches":
        """
        The predicate of a serialised form (see L{toJSON}).

        @raise InvalidArgument: for anything else.
        """
        if not isinstance(data, dict) or data.get("type") != ADDRESS_MATCHES or set(data) != {"type", "pattern"}:
            raise InvalidArgument("Not a serialised address pattern.")
        return cls(data["pattern"])


def checkPredicate(predicate):
    """
    What an engine's C{join} does with its C{predicate} argument: None and
    an L{AddressMatches} pass (a subclass does not: it may carry code no
    other process has); anything else is refused.

    @return: C{predicate}.
    @raise InvalidArgument: for anything else.
    """
    if predicate is None or type(predicate) is AddressMatches:
        return predicate
    raise InvalidArgument("A join predicate is None or an AddressMatches.")


def predicateToJSON(predicate):
    """@return: the serialised form of a predicate that L{checkPredicate} passes (None for None)."""
    return None if predicate is None else checkPredicate(predicate).toJSON()


def predicateFromJSON(data):
    """
    @return: the predicate of a serialised form (None for None).
    @raise InvalidArgument: for a form no predicate has.
    """
    return None if data is None else AddressMatches.fromJSON(data)
