"""
Validators and conditional requests: C{ETag}, C{Last-Modified},
C{If-None-Match}, C{If-Modified-Since} (304), C{If-Match} and
C{If-Unmodified-Since} (412).

An entity tag is made of a resource's I{state} (its hash and version) and
the representation: C{"{state}-x"} for XML, C{"{state}-j"} for JSON, and
C{"{state}"} for a raw content, which has only one.
"""

from __future__ import annotations

import re
from typing import List, Optional, Union

from twisted.web.http import datetimeToString, stringToDatetime

#: The representation suffixes of entity tags.
SUFFIXES = {"xml": "-x", "json": "-j", None: ""}

# One entity tag of a list, weak or strong.
_TAG = re.compile(rb'\s*(W/)?("[^"]*")\s*(?:,|$)')

#: What a C{*} condition parses to.
ANY = object()


class Validators:
    """
    What conditional requests compare against.

    @ivar state: the representation-independent part of the entity tag
        (a string without quotes).
    @ivar modified: POSIX time of the last change.
    """

    __slots__ = ("state", "modified")

    def __init__(self, state: str, modified: float):
        self.state = state
        self.modified = modified

    @classmethod
    def of(cls, resource) -> "Validators":
        """The validators of an engine resource (its hash and version)."""
        return cls(f"{resource.hash}-{resource.version}", resource.modified)

    def etag(self, kind: Optional[str]) -> bytes:
        """The quoted entity tag of one representation (C{"xml"}, C{"json"}, None for raw)."""
        return b'"%s%s"' % (self.state.encode("ascii"), SUFFIXES[kind].encode("ascii"))

    def etags(self) -> List[bytes]:
        """The entity tags of every representation of this state."""
        return [self.etag(kind) for kind in SUFFIXES]

    def lastModified(self) -> bytes:
        """The C{Last-Modified} value (an HTTP date)."""
        return datetimeToString(int(self.modified))


def setValidators(request, validators: Validators, kind: Optional[str]) -> None:
    """Set C{ETag} and C{Last-Modified} for the representation about to be sent."""
    request.setHeader(b"etag", validators.etag(kind))
    request.setHeader(b"last-modified", validators.lastModified())


def parseTags(header: Optional[bytes]) -> Union[None, object, List[bytes]]:
    """
    Read an C{If-Match} or C{If-None-Match} value.

    @return: None (no header or no tag in it), L{ANY} for C{*}, or the list
        of C{(weak, tag)} pairs, each tag with its quotes.
    """
    if header is None:
        return None
    header = header.strip()
    if header == b"*":
        return ANY
    tags = []
    position = 0
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None or match.end() == position:
            break
        tags.append((bool(match.group(1)), match.group(2)))
        position = match.end()
    return tags or None


def parseDate(header: Optional[bytes]) -> Optional[int]:
    """An HTTP date as POSIX seconds, or None if absent or not a date (then it is ignored)."""
    if not header:
        return None
    try:
        return int(stringToDatetime(header))
    except (ValueError, IndexError, KeyError, UnicodeDecodeError):
        return None


def notModified(request, validators: Validators, kind: Optional[str]) -> bool:
    """
    Whether a GET can be answered 304: C{If-None-Match} lists the
    representation's tag (weak comparison) or is C{*}; without
    C{If-None-Match}, C{If-Modified-Since} is not older than the resource.
    """
    tags = parseTags(request.getHeader(b"if-none-match"))
    if tags is ANY:
        return True
    if tags is not None:
        current = validators.etag(kind)
        return any(tag == current for _, tag in tags)
    if request.getHeader(b"if-none-match") is not None:
        return False
    since = parseDate(request.getHeader(b"if-modified-since"))
    return since is not None and int(validators.modified) <= since


def preconditionFailed(request, validators: Optional[Validators]) -> bool:
    """
    Whether a PUT or DELETE must be refused with 412.

    C{If-Match} holds when it is C{*} and the resource exists, or when it
    lists (strongly) the tag of any representation of the current state (a
    client that read XML may write with the XML tag, one that read JSON with
    the JSON tag). Without C{If-Match}, C{If-Unmodified-Since} holds when
    the resource has not changed since that date (a gone resource passes).

    @param validators: the resource's, or None if it does not exist.
    """
    header = request.getHeader(b"if-match")
    if header is not None:
        if validators is None:
            return True
        tags = parseTags(header)
        if tags is ANY:
            return False
        current = validators.etags()
        return not any(not weak and tag in current for weak, tag in tags or ())
    if validators is None:
        return False
    since = parseDate(request.getHeader(b"if-unmodified-since"))
    return since is not None and int(validators.modified) > since
