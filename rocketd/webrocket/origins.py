"""
Which web pages may open a WebSocket: the allowed origins.

A browser sends the page's origin (C{scheme://host[:port]}) in the
C{Origin} header of the opening handshake. The policy is a list of
entries: C{*} allows every origin; any other entry is an origin in which
C{*} stands for any run of characters but C{/}
(C{https://*.example.com}). Default ports are dropped before comparing,
so C{https://example.com:443} and C{https://example.com} are the same. A
handshake without an C{Origin} (not a browser) is always allowed; the
origin C{null} (a local file, a sandboxed frame) only by C{*}.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Tuple
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENTRY = re.compile(r"[a-z][a-z0-9+.-]*://[A-Za-z0-9*._~%-]+(?::(?:\d+|\*))?")


def normaliseOrigin(origin: str) -> Optional[str]:
    """
    @return: C{scheme://host[:port]} in lower case without a default port,
        or None if C{origin} is not an origin.
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parseOrigins(text: str) -> Tuple[str, ...]:
    """
    Read an allowed-origins setting: entries separated by spaces or commas.

    @return: the entries, normalised (C{("*",)} when C{*} is one of them).
    @raise ValueError: no entry, or one that is neither C{*} nor an origin.
    """
    entries = [e for e in re.split(r"[\s,]+", text.strip()) if e]
    if not entries:
        raise ValueError("it must name at least one origin, or *")
    if "*" in entries:
        return ("*",)
    result = []
    for entry in entries:
        lowered = entry.lower().rstrip("/")
        if not _ENTRY.fullmatch(lowered):
            raise ValueError(f"{entry!r} is not an origin such as https://example.com or https://*.example.com")
        scheme, _, rest = lowered.partition("://")
        host, _, port = rest.partition(":")
        if port and port != "*" and _DEFAULT_PORTS.get(scheme) == int(port):
            port = ""
        result.append(f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}")
    return tuple(result)


class OriginPolicy:
    """
    @param entries: normalised entries, as L{parseOrigins} gives them.
    """

    def __init__(self, entries: Iterable[str] = ("*",)):
        self.entries = tuple(entries)
        self._any = "*" in self.entries
        self._patterns = [
            re.compile(re.escape(entry).replace(r"\*", "[^/]*")) for entry in self.entries if entry != "*"
        ]

    def allows(self, origin: Optional[str]) -> bool:
        """Whether a handshake with this C{Origin} header (None or empty: none) may open."""
        if not origin:
            return True
        if self._any:
            return True
        normalised = normaliseOrigin(origin)
        if normalised is None:
            return False
        return any(p.fullmatch(normalised) for p in self._patterns)
