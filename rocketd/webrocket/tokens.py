"""
Single-use access tokens for browsers, and anchored regular expressions.

A backend asks for a token (C{GET /:vhost/token?uid=U&channels=P}) and hands
it to a browser, which presents it once over the WebSocket to prove who it
is (C{uid}) and which private and presence channels it may join (the
regular expression C{P}, matched against the whole channel name, as if
written C{^(P)$}).
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from twisted.logger import Logger

from rocketd.errors import InvalidArgument
from rocketd.webrocket.vhosts import DELETED, TOKEN_CHANGED

#: The longest regular expression accepted (filters and channel patterns).
MAX_PATTERN_LENGTH = 1024
#: The longest uid accepted.
MAX_UID_LENGTH = 256


def anchoredPattern(source: str, what: str = "regular expression") -> "re.Pattern[str]":
    """
    Compile a user's regular expression (Python syntax) so that it is used
    anchored at both ends: call C{.fullmatch(text)} on the result, which
    matches exactly when C{^(source)$} matches the whole of C{text} (and,
    unlike C{$}, never before a trailing newline).

    @param what: how error sentences name the expression.
    @raise InvalidArgument: if C{source} is not a valid or acceptable
        expression (too long, bad syntax, absurd repetition counts).
    """
    if not isinstance(source, str):
        raise InvalidArgument(f"The {what} must be a string.")
    if len(source) > MAX_PATTERN_LENGTH:
        raise InvalidArgument(f"The {what} is longer than {MAX_PATTERN_LENGTH} characters.")
    try:
        return re.compile(source)
    except re.error as e:
        raise InvalidArgument(f"The {what} {source!r} is not valid: {e}.") from e
    except (OverflowError, RecursionError, ValueError, TypeError) as e:
        raise InvalidArgument(f"The {what} {source!r} is not acceptable.") from e


@dataclass(frozen=True)
class Grant:
    """
    What a consumed token proves.

    @ivar uid: the user identifier the backend gave.
    @ivar channelsPattern: the source of the channel permission expression.
    @ivar vhost: the path of the vhost the token was issued for.
    """

    uid: str
    channelsPattern: str
    vhost: str = ""
    _compiled: Optional["re.Pattern[str]"] = field(default=None, compare=False, repr=False)

    def allows(self, channel: str) -> bool:
        """Whether the holder may join C{channel} (the whole name must match)."""
        compiled = self._compiled
        if compiled is None:
            compiled = anchoredPattern(self.channelsPattern)
            object.__setattr__(self, "_compiled", compiled)
        return compiled.fullmatch(channel) is not None


class TokenStore:
    """
    Issued tokens waiting to be used, each valid once and for C{ttl}
    seconds on C{clock}. Expired tokens are swept as new ones are issued,
    so the store holds at most what was issued in the last C{ttl} seconds.

    @param clock: an L{IReactorTime}.
    @param ttl: how long a token is valid, in seconds.
    """

    log = Logger()

    def __init__(self, clock, ttl: float = 3600.0):
        self._clock = clock
        self._ttl = ttl
        # token -> (expiry, grant), in issue order (so in expiry order).
        self._tokens: "OrderedDict[str, tuple]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._tokens)

    def issue(self, vhost: str, uid: str, channels: str) -> str:
        """
        Make a new single-use token.

        @param vhost: the vhost path it is valid for.
        @param uid: the user identifier (non-empty).
        @param channels: the channel permission expression.
        @return: the token: 128 lowercase hex digits (512 random bits).
        @raise InvalidArgument: empty or too long uid, bad expression.
        """
        if not isinstance(uid, str) or not uid:
            raise InvalidArgument("The uid must not be empty.")
        if len(uid) > MAX_UID_LENGTH:
            raise InvalidArgument(f"The uid is longer than {MAX_UID_LENGTH} characters.")
        compiled = anchoredPattern(channels, "channels expression")
        self._sweep()
        token = secrets.token_hex(64)
        grant = Grant(uid, channels, vhost, compiled)
        self._tokens[token] = (self._clock.seconds() + self._ttl, grant)
        return token

    def consume(self, token: str, vhost: Optional[str] = None) -> Optional[Grant]:
        """
        Use a token: whatever the answer, the token can't be used again.

        @param vhost: if given, the vhost path the token is presented to; a
            token issued for another vhost answers None.
        @return: the L{Grant}, or None for an unknown, used, expired or
            foreign token.
        """
        if not isinstance(token, str):
            return None
        entry = self._tokens.pop(token, None)
        if entry is None:
            return None
        expiry, grant = entry
        if self._clock.seconds() >= expiry:
            return None
        if vhost is not None and grant.vhost != vhost:
            return None
        return grant

    def discardVhost(self, vhost: str) -> None:
        """Forget every token issued for C{vhost} (deleted or re-tokened)."""
        for token in [t for t, (_, grant) in self._tokens.items() if grant.vhost == vhost]:
            del self._tokens[token]

    def vhostChanged(self, event: str, vhost) -> None:
        """
        The observer to register with the vhost registry
        (L{rocketd.webrocket.vhosts.VhostRegistry.addObserver}): a vhost
        deleted or given a new access token voids its browser tokens.
        """
        if event in (DELETED, TOKEN_CHANGED):
            self.discardVhost(vhost.path)

    def _sweep(self) -> None:
        now = self._clock.seconds()
        while self._tokens:
            token, (expiry, _) = next(iter(self._tokens.items()))
            if expiry > now:
                break
            del self._tokens[token]
