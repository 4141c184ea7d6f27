"""
Engine objects to RestMS documents (codec L{Element} trees) and back.

Writing: each builder takes the resources and the request's base URI (see
L{rocketd.restms._uris.baseURI}) and returns an L{Element}; L{document}
wraps elements in the C{<restms>} root, and L{render} encodes a tree in one
representation.

A delivered message is the hot path, so it is not built as a tree for each
delivery: L{renderHeldMessage} encodes the message's document once per
representation (kept in L{rocketd.engine.message.Message.cache}) with
markers where the per-delivery URIs go (the held message's href, the base
of the feed URI, the content hrefs), and splices those around the shared
bytes.

Reading: the C{read*} functions turn a parsed request document into plain
specifications, raising a 400 L{RestMSError} for what makes no sense.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from rocketd.engine.message import PROPERTY_NAMES, Content
from rocketd.restms._errors import badRequest
from rocketd.restms._uris import RESOURCE, Reference, domainPath, feedPath, parseReference, resourcePath
from rocketd.restms.codec import XML_INVALID_CHARS, Element, renderJSON, renderXML

#: The encoder of each representation.
RENDERERS = {"xml": renderXML, "json": renderJSON}


def render(element: Element, kind: str) -> bytes:
    """Encode a document tree as C{"xml"} or C{"json"}."""
    return RENDERERS[kind](element)


def document(*children: Element) -> Element:
    """The C{<restms>} root holding C{children}."""
    return Element("restms", {}, list(children))


def _attrs(**values) -> Dict[str, str]:
    """Attributes, leaving out those that are None."""
    return {name: value for name, value in values.items() if value is not None}


# -- writing -----------------------------------------------------------------


def feedElement(feed, base: str) -> Element:
    """
    C{<feed name type title license href dropped/>} (no name for a private
    feed; C{dropped}: the messages its backlog limits dropped).
    """
    return Element(
        "feed",
        _attrs(
            name=feed.name,
            type=feed.type,
            title=feed.title,
            license=feed.license,
            href=base + feedPath(feed),
            dropped=str(feed.dropped),
        ),
        [],
    )


def pipeSummaryElement(pipe, base: str) -> Element:
    """C{<pipe name type title href/>}: a pipe as a domain lists it."""
    return Element(
        "pipe",
        {"name": pipe.name, "type": pipe.type, "title": pipe.title, "href": base + resourcePath(pipe.hash)},
        [],
    )


def domainElement(domain, feeds: Sequence, pipes: Sequence, base: str) -> Element:
    """C{<domain name title href>} with the public feeds, then the pipes."""
    children = [feedElement(feed, base) for feed in feeds]
    children.extend(pipeSummaryElement(pipe, base) for pipe in pipes)
    return Element(
        "domain",
        {"name": domain.name, "title": domain.title, "href": base + domainPath(domain.name)},
        children,
    )


def joinElement(join, base: str) -> Element:
    """C{<join href address feed>} with a C{<header name value/>} per header selector."""
    headers = [Element("header", {"name": name, "value": value}, []) for name, value in join.headers.items()]
    return Element(
        "join",
        {"href": base + resourcePath(join.hash), "address": join.address, "feed": base + feedPath(join.feed)},
        headers,
    )


def messageSummaryElement(held, base: str) -> Element:
    """C{<message href address .../>}: a held message as its pipe lists it (properties, no children)."""
    message = held.message
    attrs = {"href": base + resourcePath(held.hash), "address": message.address}
    for name in PROPERTY_NAMES:
        value = message.properties.get(name)
        if value is not None:
            attrs[name] = value
    return Element("message", attrs, [])


def asyncletElement(pipe, base: str) -> Element:
    """C{<message href async="1"/>}: the slot of the pipe's next message."""
    return Element("message", {"href": base + resourcePath(pipe.asynclet), "async": "1"}, [])


def pipeElement(pipe, joins: Sequence, messages: Sequence, base: str) -> Element:
    """
    C{<pipe name type title href dropped>}: the joins, the held messages
    in order, then exactly one asynclet. C{dropped}: the messages its depth
    limit dropped.
    """
    children = [joinElement(join, base) for join in joins]
    children.extend(messageSummaryElement(held, base) for held in messages)
    children.append(asyncletElement(pipe, base))
    return Element(
        "pipe",
        {
            "name": pipe.name,
            "type": pipe.type,
            "title": pipe.title,
            "href": base + resourcePath(pipe.hash),
            "dropped": str(pipe.dropped),
        },
        children,
    )


def contentElement(content, base: str) -> Element:
    """C{<content href type length/>}: a staged content."""
    return Element(
        "content",
        {
            "href": base + resourcePath(content.hash),
            "type": content.content.type,
            "length": str(content.content.length),
        },
        [],
    )


# -- the delivered message, encoded once per representation ------------------

#: Contents up to this many bytes are delivered inline as well as by href.
INLINE_LIMIT = 16384

# A content holding a character XML 1.0 can't carry goes out as base64.
_NOT_XML_TEXT = XML_INVALID_CHARS

# Markers are drawn per process, so that no client can write one into a
# message: "@{nonce}h@" (the held message's URI), "@{nonce}b@" (the base
# URI), "@{nonce}c{i}@" (the URI of content i).
_NONCE = secrets.token_hex(16)
_MARKER = re.compile(("@%s([hbc])([0-9]*)@" % _NONCE).encode("ascii"))
_HREF = -1
_BASE = -2
#: The path of a private resource up to its hash, as bytes.
_RESOURCE = RESOURCE.encode("ascii")


def _messageElement(message, href: Optional[str], feed: Optional[str], contentHrefs: Sequence[Optional[str]]) -> Element:
    attrs = _attrs(href=href, address=message.address)
    if feed is not None:
        attrs["feed"] = feed
    for name in PROPERTY_NAMES:
        value = message.properties.get(name)
        if value is not None:
            attrs[name] = value
    children = [Element("header", {"name": name, "value": value}, []) for name, value in message.headers.items()]
    children.extend(_deliveredContent(content, href) for content, href in zip(message.contents, contentHrefs))
    return Element("message", attrs, children)


def _deliveredContent(content, href: Optional[str]) -> Element:
    """
    C{<content type length href/>} (no href when C{href} is None); a
    content of at most L{INLINE_LIMIT} bytes also carries its value (plain
    text when it is UTF-8 that XML can carry, base64 otherwise), saving the
    client a GET.
    """
    attrs = _attrs(type=content.type, length=str(content.length), href=href)
    if content.length > INLINE_LIMIT:
        return Element("content", attrs, [])
    try:
        text = content.body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or _NOT_XML_TEXT.search(text) is not None:
        attrs["encoding"] = "base64"
        text = base64.b64encode(content.body).decode("ascii")
    else:
        attrs["encoding"] = "plain"
    return Element("content", attrs, [], text)


def _template(message, kind: str) -> Tuple[Tuple[bytes, int], ...]:
    """
    The message's document in one representation, as pairs of shared bytes
    and the slot that follows them (L{_HREF}, L{_BASE}, a content index, or
    None after the last bytes). Computed once per message and kind.
    """
    key = ("restms", kind)
    template = message.cache.get(key)
    if template is None:
        feed = None
        if message.feed is not None:
            feed = "@%sb@%s" % (_NONCE, feedPath(message.feed))
        contentHrefs = ["@%sc%d@" % (_NONCE, index) for index in range(len(message.contents))]
        element = document(_messageElement(message, "@%sh@" % _NONCE, feed, contentHrefs))
        pieces = _MARKER.split(render(element, kind))
        pairs = []
        for position in range(0, len(pieces) - 1, 3):
            slot, index = pieces[position + 1], pieces[position + 2]
            pairs.append(
                (pieces[position], _HREF if slot == b"h" else _BASE if slot == b"b" else int(index))
            )
        pairs.append((pieces[-1], None))
        template = message.cache[key] = tuple(pairs)
    return template


def renderHeldMessage(held, kind: str, base: bytes) -> bytes:
    """
    The document of a held message, C{<message href address feed ...>} with
    its headers and a C{<content type length href/>} per content.

    @param base: the request's base URI, as bytes.
    """
    prefix = base + _RESOURCE
    message = held.message
    contents = held.contents
    if contents is not message.contents and len(contents) != len(message.contents):
        # Some contents were deleted from this held message: its own
        # document, encoded for this answer only.
        message = dataclasses.replace(message, contents=contents, cache={})
    contentHashes = None
    out = []
    append = out.append
    for shared, slot in _template(message, kind):
        append(shared)
        if slot is None:
            continue
        if slot == _HREF:
            append(prefix)
            append(held.hash.encode("ascii"))
        elif slot == _BASE:
            append(base)
        else:
            if contentHashes is None:
                contentHashes = held.contentHashes
            append(prefix)
            append(contentHashes[slot].encode("ascii"))
    return b"".join(out)


def renderStreamedMessage(message, kind: str, base: bytes) -> bytes:
    """
    The document of a message as a stream pipe writes it: like
    L{renderHeldMessage} but without the message's href and its contents'
    hrefs, since a streamed message is deleted from its pipe once written
    (those URIs would answer 404). It is the same bytes for every pipe, so
    it is encoded once per message, representation and base URI and kept in
    the message's cache.

    @param base: the request's base URI, as bytes.
    @return: the encoded document (bytes, shared: don't change it).
    """
    key = ("restms-streamed", kind, base)
    cache = message.cache
    data = cache.get(key)
    if data is None:
        feed = None
        if message.feed is not None:
            feed = "@%sb@%s" % (_NONCE, feedPath(message.feed))
        element = document(_messageElement(message, None, feed, [None] * len(message.contents)))
        data = render(element, kind).replace(("@%sb@" % _NONCE).encode("ascii"), base)
        cache[key] = data
    return data


# -- reading -----------------------------------------------------------------


def child(root: Element, *tags: str) -> Optional[Element]:
    """The first child of C{root} whose tag is one of C{tags} (others are ignored)."""
    for element in root.children:
        if element.tag in tags:
            return element
    return None


def _attr(element: Element, name: str) -> Optional[str]:
    value = element.attrs.get(name)
    return None if value is None else str(value)


@dataclass
class FeedSpec:
    """A C{<feed>} as a client wrote it; None for an attribute it left out."""

    name: Optional[str] = None
    type: Optional[str] = None
    title: Optional[str] = None
    license: Optional[str] = None


@dataclass
class PipeSpec:
    """A C{<pipe>} as a client wrote it."""

    type: Optional[str] = None
    title: Optional[str] = None


@dataclass
class JoinSpec:
    """A C{<join>}: the address pattern, the feed reference and the header selector."""

    address: str = "*"
    feed: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass
class MessageSpec:
    """
    A C{<message>} to publish: its contents are inline L{Content}s or
    L{Reference}s to staged ones.
    """

    address: str = ""
    properties: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    contents: List[Union[Content, Reference]] = field(default_factory=list)


def readFeed(element: Element) -> FeedSpec:
    return FeedSpec(
        name=_attr(element, "name"),
        type=_attr(element, "type"),
        title=_attr(element, "title"),
        license=_attr(element, "license"),
    )


def readPipe(element: Element) -> PipeSpec:
    return PipeSpec(type=_attr(element, "type"), title=_attr(element, "title"))


def _readHeaders(element: Element) -> Dict[str, str]:
    headers = {}
    for header in element.children:
        if header.tag != "header":
            continue
        name = _attr(header, "name")
        if not name:
            raise badRequest("A header needs a name.")
        headers[name] = _attr(header, "value") or ""
    return headers


def readJoin(element: Element) -> JoinSpec:
    address = _attr(element, "address")
    return JoinSpec(
        address="*" if address is None or address == "" else address,
        feed=_attr(element, "feed"),
        headers=_readHeaders(element),
    )


def _readContent(element: Element) -> Union[Content, Reference]:
    href = _attr(element, "href")
    if href is not None:
        reference = parseReference(href)
        if reference is None or reference.kind != "resource":
            raise badRequest(f"The content href {href!r} is not the URI of a staged content.")
        return reference
    encoding = _attr(element, "encoding") or "plain"
    text = element.text or ""
    if encoding == "plain":
        return Content(_attr(element, "type") or "text/plain", text.encode("utf-8"))
    if encoding == "base64":
        try:
            body = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise badRequest("A base64 content is not valid base64.")
        return Content(_attr(element, "type") or "application/octet-stream", body)
    raise badRequest(f"The content encoding {encoding!r} is unknown (use plain or base64).")


def readMessages(root: Element) -> List[MessageSpec]:
    """
    The C{<message>} children of a document, in order.

    @raise RestMSError: 400 when there is none, or one is malformed.
    """
    messages = []
    for element in root.children:
        if element.tag != "message":
            continue
        properties = {}
        for name in PROPERTY_NAMES:
            value = _attr(element, name)
            if value is not None:
                properties[name] = value
        messages.append(
            MessageSpec(
                address=_attr(element, "address") or "",
                properties=properties,
                headers=_readHeaders(element),
                contents=[_readContent(content) for content in element.children if content.tag == "content"],
            )
        )
    if not messages:
        raise badRequest("The document holds no message.")
    return messages
