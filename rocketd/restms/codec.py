"""
RestMS documents: a small element tree, and its XML and JSON encodings.

Every RestMS document is a C{<restms>} root holding resource elements
(C{feed}, C{pipe}, C{join}, C{message}, C{header}, C{content}, C{domain})
whose properties are attributes. This module turns bytes into an
L{Element} tree and back, in either representation, and knows nothing of
the engine: the face maps trees to engine calls.

XML::

    <restms xmlns="http://www.imatix.com/schema/restms">
      <pipe name="..." type="fifo">
        <join address="*" feed="..."/>
      </pipe>
    </restms>

JSON (the same tree)::

    {"restms": {"pipe": [{"name": "...", "type": "fifo",
                          "join": [{"address": "*", "feed": "..."}]}]}}

The JSON mapping: an element is an object; its attributes are string
members; its children are grouped by tag, each tag a member holding an
array of objects (in the order of first appearance, and document order
within a tag); its text is the member C{"$text"}. XML keeps document order
across tags; RestMS documents order their children by tag anyway (joins
before messages, headers before the content), so the two representations
map onto each other without loss.

Input is parsed defensively: no DTD, no entity expansion, no network, a
bounded nesting depth. Every input problem raises L{CodecError}, whose
text is one sentence a face can send as a 400 body.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Dict, List, Optional, Union

from lxml import etree

from rocketd.http.strictjson import rejectConstant

#: The namespace of the documents rocketd writes.
NAMESPACE = "http://www.imatix.com/schema/restms"
#: The namespace later drafts used; accepted on input.
RESTMS_ORG_NAMESPACE = "http://www.restms.org/schema/restms"
#: The media type of each representation, by kind.
MEDIA_TYPES = {"xml": "application/restms+xml", "json": "application/restms+json"}
#: The JSON member that holds an element's text.
TEXT_KEY = "$text"
#: Documents nested deeper than this are refused (RestMS needs four levels).
MAX_DEPTH = 32

_ROOT = "restms"
_NAMESPACES = frozenset({NAMESPACE, RESTMS_ORG_NAMESPACE})
# Elements whose whitespace-only text is data, not indentation.
_TEXT_TAGS = frozenset({"content"})


@dataclass(slots=True)
class Element:
    """
    One element of a RestMS document.

    @ivar tag: the element's local name (C{"restms"}, C{"feed"}, ...).
    @ivar attrs: the element's attributes, name to string value, in
        document order.
    @ivar children: the child elements, in document order.
    @ivar text: the element's text, or L{None}. Only elements without
        children carry text (in practice only C{<content>}).
    """

    tag: str
    attrs: Dict[str, str] = field(default_factory=dict)
    children: List["Element"] = field(default_factory=list)
    text: Optional[str] = None

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """@return: the value of the attribute C{name}, or C{default}."""
        return self.attrs.get(name, default)

    def find(self, tag: str) -> Optional["Element"]:
        """@return: the first child with that tag, or L{None}."""
        for child in self.children:
            if child.tag == tag:
                return child
        return None

    def findAll(self, tag: str) -> List["Element"]:
        """@return: every child with that tag, in order."""
        return [child for child in self.children if child.tag == tag]


class CodecError(ValueError):
    """
    A document could not be read. C{str(error)} is one human-readable
    sentence, fit for a 400 response body.
    """


# ---------------------------------------------------------------------------
# XML input

_local = threading.local()


def _xmlParser() -> etree.XMLParser:
    """
    The safe parser, one per thread (lxml parsers may be reused, but not
    shared between threads).
    """
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
    return parser


_WHITESPACE = re.compile(rb"[ \t\r\n]*")


def _hasDoctype(data: bytes) -> bool:
    """
    Whether the prolog of C{data} (before the root element) declares a
    DOCTYPE. A linear scan: whitespace, the XML declaration, processing
    instructions and comments are skipped. Documents in an encoding this
    scan can't read fall through to the check after parsing.
    """
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while True:
        i = _WHITESPACE.match(data, i).end()
        if data.startswith(b"<?", i):
            end = data.find(b"?>", i + 2)
            if end < 0:
                return False
            i = end + 2
        elif data.startswith(b"<!--", i):
            end = data.find(b"-->", i + 4)
            if end < 0:
                return False
            i = end + 3
        else:
            return data.startswith(b"<!DOCTYPE", i)


def _oneLine(error: Exception) -> str:
    """lxml's reason for a failure, on one line, without a final period."""
    message = getattr(error, "msg", None) or str(error) or error.__class__.__name__
    return message.splitlines()[0].strip().rstrip(".")


def parseXML(data: bytes) -> Element:
    """
    Read an XML RestMS document.

    The root must be C{<restms>} in the iMatix namespace, the restms.org
    namespace or no namespace. Child elements in another namespace and
    attributes with a namespace are ignored; unknown elements in the RestMS
    namespace are kept (the face ignores what it does not know).

    @param data: the document's bytes (any encoding XML allows).
    @return: the C{restms} root L{Element}.
    @raise CodecError: the document has a DOCTYPE, is not well-formed, has
        another root, or is nested deeper than L{MAX_DEPTH}.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if _hasDoctype(data):
        raise CodecError("Documents with a DOCTYPE are not accepted.")
    try:
        root = etree.fromstring(data, _xmlParser())
    except etree.LxmlError as e:
        raise CodecError(f"The document is not well-formed XML ({_oneLine(e)}).") from None
    if root.getroottree().docinfo.doctype:
        raise CodecError("Documents with a DOCTYPE are not accepted.")
    tag = root.tag
    namespace = None
    if tag.startswith("{"):
        namespace, _, tag = tag[1:].partition("}")
    if tag != _ROOT or (namespace is not None and namespace not in _NAMESPACES):
        raise CodecError(f"The document's root element must be <restms>, not <{tag}>.")
    return _fromXML(root, _ROOT, 0)


def _fromXML(node, tag: str, depth: int) -> Element:
    if depth > MAX_DEPTH:
        raise CodecError("The document is nested too deeply.")
    attrs = {}
    for name, value in node.attrib.items():
        if name[0] != "{":
            attrs[name] = value
    children = []
    for child in node:
        childTag = child.tag
        if not isinstance(childTag, str):
            # An entity reference or similar node that is not an element.
            continue
        if childTag[0] == "{":
            namespace, _, childTag = childTag[1:].partition("}")
            if namespace not in _NAMESPACES:
                continue
        children.append(_fromXML(child, childTag, depth + 1))
    text = node.text
    if text is not None and (len(node) or (tag not in _TEXT_TAGS and text.isspace())):
        text = None
    return Element(tag, attrs, children, text)


# ---------------------------------------------------------------------------
# XML output

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: Characters XML 1.0 cannot carry at all (C0 controls but tab, LF and CR;
#: surrogates; U+FFFE, U+FFFF), as a regular expression's character set;
#: written as U+FFFD.
XML_INVALID = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
#: Finds a character of L{XML_INVALID}.
XML_INVALID_CHARS = re.compile(f"[{XML_INVALID}]")
# Attribute values keep tabs and line ends as character references, or a
# parser would normalise them to spaces.
_ATTR_SPECIAL = re.compile(f'[&<>"\t\n\r{XML_INVALID}]')
_TEXT_SPECIAL = re.compile(f"[&<>\r{XML_INVALID}]")
_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\t": "&#9;",
    "\n": "&#10;",
    "\r": "&#13;",
}


def _replace(match) -> str:
    return _ESCAPES.get(match.group(), "\ufffd")


def _escapeAttr(value) -> str:
    if type(value) is not str:
        value = str(value)
    if _ATTR_SPECIAL.search(value) is None:
        return value
    return _ATTR_SPECIAL.sub(_replace, value)


def _escapeText(value) -> str:
    if type(value) is not str:
        value = str(value)
    if _TEXT_SPECIAL.search(value) is None:
        return value
    return _TEXT_SPECIAL.sub(_replace, value)


def _writeXML(element: Element, out: list, indent: str) -> None:
    tag = element.tag
    out.append(indent)
    out.append("<")
    out.append(tag)
    for name, value in element.attrs.items():
        out.append(f' {name}="{_escapeAttr(value)}"')
    _writeXMLBody(element, out, indent)


def _writeXMLBody(element: Element, out: list, indent: str) -> None:
    children = element.children
    text = element.text
    if not children and text is None:
        out.append("/>")
        return
    out.append(">")
    if text is not None:
        out.append(_escapeText(text))
    if children:
        inner = indent + "  "
        for child in children:
            _writeXML(child, out, inner)
        out.append(indent)
    out.append(f"</{element.tag}>")


def renderXML(root: Element) -> bytes:
    """
    Write a document as XML: the declaration, then the root (which gets
    the RestMS namespace) and its tree, indented, attributes in order.
    Characters XML cannot carry are written as U+FFFD.

    @param root: the C{restms} L{Element}.
    @return: UTF-8 bytes.
    """
    out = [_XML_DECLARATION, "<", root.tag, f' xmlns="{NAMESPACE}"']
    for name, value in root.attrs.items():
        if name != "xmlns":
            out.append(f' {name}="{_escapeAttr(value)}"')
    _writeXMLBody(root, out, "\n")
    out.append("\n")
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------------------
# JSON input

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def parseJSON(data: Union[bytes, str]) -> Element:
    """
    Read a JSON RestMS document (see the module docstring for the mapping).

    On input, a single object is accepted where an array is expected;
    numbers become their decimal strings, C{true}/C{false} become C{"1"}
    and C{"0"} (RestMS's boolean attributes), and C{null} members are
    ignored, as is an C{"xmlns"} member.

    @param data: the document's bytes (UTF-8, -16 or -32) or text.
    @return: the C{restms} root L{Element}.
    @raise CodecError: invalid JSON, a root that is not an object, no
        C{"restms"} member, a member that is not a valid name, a string
        XML cannot carry, or nesting deeper than L{MAX_DEPTH}.
    """
    try:
        document = json.loads(data, parse_constant=rejectConstant)
    except RecursionError:
        raise CodecError("The document is nested too deeply.") from None
    except ValueError as e:
        raise CodecError(f"The document is not valid JSON ({_oneLine(e)}).") from None
    if not isinstance(document, dict):
        raise CodecError("A RestMS JSON document must be an object.")
    if _ROOT not in document:
        raise CodecError('A RestMS JSON document must have a "restms" member at its root.')
    body = document[_ROOT]
    if not isinstance(body, dict):
        raise CodecError('The "restms" member must hold an object.')
    return _fromJSON(_ROOT, body, 0)


def _string(name: str, value) -> str:
    """A JSON scalar as an attribute or text string."""
    if isinstance(value, str):
        if XML_INVALID_CHARS.search(value) is not None:
            raise CodecError(f'The value of "{name}" holds a character XML cannot carry.')
        return value
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, (int, float)):
        return str(value)
    # Objects and arrays are children; only the text member gets here with one.
    raise CodecError(f'The member "{name}" must hold a string.')


def _fromJSON(tag: str, obj: dict, depth: int) -> Element:
    if depth > MAX_DEPTH:
        raise CodecError("The document is nested too deeply.")
    element = Element(tag)
    attrs = element.attrs
    children = element.children
    for name, value in obj.items():
        if value is None or name == "xmlns":
            continue
        if name == TEXT_KEY:
            element.text = _string(name, value)
            continue
        if _NAME.match(name) is None:
            shown = json.dumps(name if len(name) <= 40 else name[:40] + "...")
            raise CodecError(f"{shown} is not a valid attribute or element name.")
        if isinstance(value, dict):
            children.append(_fromJSON(name, value, depth + 1))
        elif isinstance(value, list):
            for item in value:
                if not isinstance(item, dict):
                    raise CodecError(f'Every item of "{name}" must be an object.')
                children.append(_fromJSON(name, item, depth + 1))
        else:
            attrs[name] = _string(name, value)
    return element


# ---------------------------------------------------------------------------
# JSON output

_jsonString = encode_basestring
_JSON_TEXT_KEY = _jsonString(TEXT_KEY) + ":"


def _writeJSON(element: Element) -> str:
    """One element as a JSON object, written directly (strings escaped by json's C escaper)."""
    groups: Optional[Dict[str, List[str]]] = None
    if element.children:
        groups = {}
        for child in element.children:
            group = groups.get(child.tag)
            if group is None:
                group = groups[child.tag] = []
            group.append(_writeJSON(child))
    parts = []
    for name, value in element.attrs.items():
        if groups is not None and name in groups:
            # A child tag that is also an attribute name can't be both
            # members; the children win.
            continue
        parts.append(_jsonString(name) + ":" + _jsonString(value if type(value) is str else str(value)))
    if element.text is not None:
        parts.append(_JSON_TEXT_KEY + _jsonString(element.text))
    if groups is not None:
        for tag, group in groups.items():
            parts.append(_jsonString(tag) + ":[" + ",".join(group) + "]")
    return "{" + ",".join(parts) + "}"


def renderJSON(root: Element) -> bytes:
    """
    Write a document in the JSON mapping, compact and on one line (fit for
    an SSE C{data:} field).

    @param root: the C{restms} L{Element}.
    @return: UTF-8 bytes.
    """
    text = "{" + _jsonString(root.tag) + ":" + _writeJSON(root) + "}"
    # A lone surrogate can only sit inside a JSON string, where its
    # backslash escape is exactly the JSON escape for it.
    return text.encode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------
# Either representation


def parseDocument(data: bytes, kind: str) -> Element:
    """
    Read a document of the given kind.

    @param kind: C{"xml"} or C{"json"} (see L{requestKind}).
    @return: the C{restms} root L{Element}.
    @raise CodecError: see L{parseXML} and L{parseJSON}.
    @raise ValueError: C{kind} is neither.
    """
    if kind == "xml":
        return parseXML(data)
    if kind == "json":
        return parseJSON(data)
    raise ValueError(f"unknown document kind {kind!r}")


# ---------------------------------------------------------------------------
# Content negotiation

_XML_TYPES = ("application/restms+xml", "text/xml", "application/xml")
_JSON_TYPES = ("application/restms+json", "application/json")
_REQUEST_KINDS = {"application/restms+xml": "xml", "application/restms+json": "json"}
_GENERIC_REQUEST_KINDS = dict(
    _REQUEST_KINDS,
    **{"text/xml": "xml", "application/xml": "xml", "application/json": "json"},
)
# Accept values up to this length are cached (they repeat a lot).
_CACHED_ACCEPT_LENGTH = 256


def _asText(value: Union[bytes, str]) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def requestKind(contentType: Union[bytes, str, None], generic: bool = False) -> Optional[str]:
    """
    Which RestMS representation a request body is in, by its
    C{Content-Type} (parameters such as C{charset} are ignored).

    @param generic: also take C{text/xml}, C{application/xml} and
        C{application/json} for documents. Leave it false where a body of
        another type means something else (a raw content posted to a
        feed); set it where the body can only be a document.
    @return: C{"xml"}, C{"json"}, or L{None} when the body is not a RestMS
        document (or the header is missing).
    """
    if contentType is None:
        return None
    mediaType = _asText(contentType).split(";", 1)[0].strip().lower()
    return (_GENERIC_REQUEST_KINDS if generic else _REQUEST_KINDS).get(mediaType)


def responseKind(accept: Union[bytes, str, None]) -> Optional[str]:
    """
    Which representation to answer in, by the request's C{Accept}.

    XML for C{application/restms+xml}, C{text/xml}, C{application/xml},
    C{*/*} or no (or an empty) header; JSON for C{application/restms+json}
    or C{application/json}. Lists and q-values are honoured: each kind
    gets the q-value of the most specific range that matches one of its
    media types; the highest q wins, then the more specific range, then
    the range listed first, then XML.

    @return: C{"xml"}, C{"json"}, or L{None} when nothing acceptable is
        offered (answer 406).
    """
    if accept is None:
        return "xml"
    text = _asText(accept).strip()
    if not text:
        return "xml"
    if len(text) <= _CACHED_ACCEPT_LENGTH:
        return _negotiateCached(text)
    return _negotiate(text)


def _parseAccept(text: str) -> List[tuple]:
    """The media ranges of an Accept value, as (range, q, position)."""
    ranges = []
    for position, part in enumerate(text.split(",")):
        params = part.split(";")
        mediaRange = params[0].strip().lower()
        if mediaRange == "*":
            mediaRange = "*/*"
        if "/" not in mediaRange:
            continue
        q = 1.0
        for param in params[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 1.0
                if not 0.0 <= q <= 1.0:
                    # Out of range or NaN: clamp, and treat NaN as refusal.
                    q = min(max(q, 0.0), 1.0) if q == q else 0.0
                # Parameters after q are accept extensions.
                break
        ranges.append((mediaRange, q, position))
    return ranges


def _negotiate(text: str) -> Optional[str]:
    ranges = _parseAccept(text)
    best = None
    bestKind = None
    for kind, types, preference in (("xml", _XML_TYPES, 1), ("json", _JSON_TYPES, 0)):
        for mediaType in types:
            wildcard = mediaType.split("/", 1)[0] + "/*"
            match = None
            for mediaRange, q, position in ranges:
                if mediaRange == mediaType:
                    specificity = 2
                elif mediaRange == wildcard:
                    specificity = 1
                elif mediaRange == "*/*":
                    specificity = 0
                else:
                    continue
                if match is None or specificity > match[1]:
                    match = (q, specificity, -position, preference)
            if match is not None and (best is None or match > best):
                best, bestKind = match, kind
    if best is None or best[0] <= 0.0:
        return None
    return bestKind


_negotiateCached = lru_cache(maxsize=512)(_negotiate)
