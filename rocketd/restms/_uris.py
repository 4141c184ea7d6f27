"""
The URIs of the RestMS face: the absolute ones it writes, and the resource
references it reads in documents.

Every URI the face writes is absolute, built from the request's C{Host}
header (C{http://host:port/restms/...}); documents it reads may use an
absolute URI, a bare path, or (for a join's C{feed}) a public feed's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, unquote, urlsplit

from rocketd.http.hosts import validHost
from rocketd.http.paths import RESTMS
from rocketd.interfaces import DEFAULT_DOMAIN, DEFAULT_FEED

#: The path every RestMS resource lives under.
PREFIX = "/" + RESTMS
#: The path prefix of private resources; a hash follows it.
RESOURCE = PREFIX + "/resource/"



def baseURI(request) -> str:
    """
    The scheme and authority every URI in a response starts with.

    @param request: the L{twisted.web.iweb.IRequest}.
    @return: e.g. C{"http://example.com:8080"} (no trailing slash).
    """
    scheme = "https" if request.isSecure() else "http"
    host = request.getHeader(b"host")
    # A Host we are willing to copy into URIs: a DNS name or an IPv4
    # address, or a bracketed IPv6 address, and an optional port. Anything
    # else (quotes, spaces, markup, a name that is not one: a..b) is never
    # echoed: the listening address is used. (The listeners' site has
    # already put the listening address in place of such a Host.)
    if host and validHost(host):
        return f"{scheme}://{host.decode('ascii')}"
    address = request.getHost()
    name = getattr(address, "host", "localhost")
    if ":" in name:
        name = f"[{name}]"
    port = getattr(address, "port", None)
    return f"{scheme}://{name}:{port}" if port else f"{scheme}://{name}"


def resourcePath(hash: str) -> str:
    """The path of a private resource."""
    return RESOURCE + hash


def feedPath(feed) -> str:
    """
    The path of a feed: C{/restms/feed/{name}} for a public feed of the
    default domain, the private C{/restms/resource/{hash}} otherwise (feeds
    of other domains are reached by their hash).
    """
    if feed.name is not None and feed.domain == DEFAULT_DOMAIN:
        return f"{PREFIX}/feed/{feed.name}"
    return RESOURCE + feed.hash


def domainPath(name: str) -> str:
    """The path of a domain (its name may hold slashes)."""
    return f"{PREFIX}/domain/{quote(name, safe='/')}"


@dataclass(frozen=True)
class Reference:
    """
    A resource named in a document.

    @ivar kind: C{"feed"} (a public feed of the default domain, by name),
        C{"resource"} (a private resource, by hash) or C{"domain"}.
    @ivar name: the feed name, hash or domain name.
    @ivar text: the reference as the client wrote it (for error sentences).
    """

    kind: str
    name: str
    text: str


def parseReference(text: Optional[str]) -> Optional[Reference]:
    """
    Read a resource reference: an absolute URI (its host is not checked: a
    proxy may have rewritten it), a path, or a bare public feed name.

    @return: the L{Reference}, or None if C{text} names no RestMS resource.
    """
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    if "://" in value:
        path = urlsplit(value).path
    elif value.startswith("/"):
        path = value.split("?", 1)[0]
    else:
        # The seed's newsfeed scenario joins with feed="{feed-name}".
        if "/" in value:
            return None
        return Reference("feed", value, text)
    path = unquote(path)
    if not path.startswith(PREFIX + "/"):
        return None
    kind, _, rest = path[len(PREFIX) + 1 :].partition("/")
    if kind == "feed":
        name = rest.rstrip("/") or DEFAULT_FEED
        return None if "/" in name else Reference("feed", name, text)
    if kind == "resource":
        name = rest.rstrip("/")
        return None if not name or "/" in name else Reference("resource", name, text)
    if kind == "domain":
        return Reference("domain", rest.rstrip("/") or DEFAULT_DOMAIN, text)
    return None
