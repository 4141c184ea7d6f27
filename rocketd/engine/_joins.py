"""
The checks of a pipe's request to join a feed (L{rocketd.interfaces.IPipe.join})
that every engine makes alike, once it has checked that the feed is its own
and still there.
"""

from __future__ import annotations

from rocketd.engine.predicates import checkPredicate
from rocketd.errors import Forbidden, InvalidArgument

#: The feed types that hand each message to one join.
ROTATING = ("rotator", "service")


def checkJoinRequest(pipe, feed, address, headers, predicate) -> dict:
    """
    @param pipe: the joining pipe (its C{type}).
    @param feed: the feed (its C{type} and C{isDefault}).
    @return: a copy of C{headers} (an empty dict for None).
    @raise Forbidden: a join onto a default feed, or an ondemand pipe
        onto a feed that is not rotator or service.
    @raise InvalidArgument: an address that is not a string, headers that
        do not map strings to strings, an C{x-match} other than C{all} or
        C{any}, a predicate that is not None or an L{AddressMatches}.
    """
    if feed.isDefault:
        raise Forbidden("Nothing can join the default feed but the pipes' own default joins.")
    if pipe.type == "ondemand" and feed.type not in ROTATING:
        raise Forbidden("An ondemand pipe can only join rotator and service feeds.")
    if not isinstance(address, str):
        raise InvalidArgument("A join address must be a string.")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidArgument("Join headers must map strings to strings.")
    if headers.get("x-match", "all") not in ("all", "any"):
        raise InvalidArgument("The x-match header must be 'all' or 'any'.")
    checkPredicate(predicate)
    return dict(headers)
