"""
A L{Message} to AMQP and back, sanitised so that nothing a RestMS client
sends can close the engine's AMQP channel (design section 6).

Outbound (L{toAMQP}): the address is the routing key; one content is the
body with its C{content_type}; zero or several contents are concatenated,
with C{x-rocketd-parts} listing each one's type and length. A property goes
to its AMQP field only when the broker accepts its value (C{delivery_mode}
1 or 2, C{priority} 0-9, C{expiration} and C{timestamp} non-negative
integers); any other value, C{sender_id}, unknown names and always
C{user_id} (the broker refuses a foreign one) travel as the header
C{x-rocketd-p-<name>}. The headers C{CC} and C{BCC} (which the broker reads
as sender-selected routing) travel as C{x-rocketd-h-CC}/C{-BCC}. Names
starting with C{x-rocketd-} are rocketd's: a client may not send them.
Shortstrs (properties, header names) longer than 255 bytes and encoded
properties over 64 KiB are refused with L{InvalidArgument}.

Inbound (L{fromAMQP}): the reverse; broker headers (C{x-death},
C{x-delivery-count}, C{x-first-death-*}) are dropped and non-string
header values stringified, so a message from any AMQP peer reads as
RestMS describes it.

The property values are a plain dict of L{pika.BasicProperties} keyword
arguments: this module does not import pika.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from rocketd.engine.message import Content, Message
from rocketd.errors import InvalidArgument

#: rocketd's own header prefix.
RESERVED = "x-rocketd-"
PARTS = "x-rocketd-parts"
PROPERTY = "x-rocketd-p-"
HEADER = "x-rocketd-h-"
#: Marks a delivery_mode the engine chose (absent from the RestMS message).
DEFAULTED = "x-rocketd-default-dm"
#: Set on every message rocketd publishes.
MESSAGE_ID = "x-rocketd-id"
#: The feed a message was published to, when the exchange does not say.
FEED = "x-rocketd-feed"
#: The address of a message a rotator or service feed forwarded to a pipe's queue.
ADDRESS = "x-rocketd-address"

#: Shortstr properties that go to their AMQP field as they are.
_SHORTSTR = ("reply_to", "message_id", "correlation_id", "type", "app_id")
#: Headers the broker interprets as routing.
_ROUTING_HEADERS = ("CC", "BCC")
#: Headers the broker adds, not part of the message.
_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason")
SHORTSTR_MAX = 255
PROPERTIES_MAX = 65536


def _shortstr(value: str, what: str) -> str:
    if len(value.encode("utf-8")) > SHORTSTR_MAX:
        raise InvalidArgument(f"The {what} is longer than 255 bytes, which AMQP does not carry.")
    return value


def _integer(value: str, low: int, high: Optional[int]) -> Optional[int]:
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        return None
    number = int(value)
    if number < low or (high is not None and number > high):
        return None
    return number


def toAMQP(message: Message, messageId: str, feedHash: Optional[str] = None) -> Tuple[str, Dict[str, Any], bytes]:
    """
    @param messageId: the C{x-rocketd-id} to stamp.
    @param feedHash: the hash of the feed published to, when the exchange
        alone does not name it (the default exchange, a pipe queue).
    @return: C{(routingKey, properties, body)}; C{properties} are keyword
        arguments of C{pika.BasicProperties}.
    @raise InvalidArgument: what AMQP cannot carry.
    """
    routingKey = _shortstr(message.address, "address")
    fields: Dict[str, Any] = {}
    headers: Dict[str, Any] = {}
    size = 0
    for name, value in message.properties.items():
        value = str(value)
        size += len(name) + len(value.encode("utf-8"))
        if name in _SHORTSTR:
            fields[name] = _shortstr(value, f"property {name}")
            continue
        number = None
        if name == "delivery_mode":
            number = _integer(value, 1, 2)
        elif name == "priority":
            number = _integer(value, 0, 9)
        elif name == "timestamp":
            number = _integer(value, 0, 2**63 - 1)
        elif name == "expiration":
            if _integer(value, 0, 2**32 - 1) is not None and str(int(value)) == value:
                fields[name] = value
                continue
        if number is not None and str(number) == value:
            fields[name] = number
        else:
            headers[PROPERTY + _shortstr(name, "property name")] = value
    for name, value in message.headers.items():
        value = str(value)
        if name.startswith(RESERVED):
            raise InvalidArgument(f"Header names starting with {RESERVED!r} are reserved.")
        _shortstr(name, "header name")
        size += len(name) + len(value.encode("utf-8"))
        headers[HEADER + name if name in _ROUTING_HEADERS else name] = value
    if "delivery_mode" not in fields:
        fields["delivery_mode"] = 2
        if "delivery_mode" not in message.properties:
            headers[DEFAULTED] = "1"
    contents = message.contents
    if len(contents) == 1 and contents[0].type and len(contents[0].type.encode("utf-8")) <= SHORTSTR_MAX:
        fields["content_type"] = contents[0].type
        body = contents[0].body
    else:
        headers[PARTS] = [{"type": c.type, "length": len(c.body)} for c in contents]
        body = b"".join(c.body for c in contents)
        size += sum(len(c.type) + 16 for c in contents)
    headers[MESSAGE_ID] = messageId
    if feedHash is not None:
        headers[FEED] = feedHash
    if size > PROPERTIES_MAX:
        raise InvalidArgument("The properties and headers are larger than 64 KiB, which AMQP does not carry.")
    fields["headers"] = headers
    return routingKey, fields, body


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fromAMQP(routingKey: str, properties, body: bytes, feed=None) -> Message:
    """
    @param properties: the delivery's properties (an object with the
        attributes of C{pika.BasicProperties}).
    @param feed: the L{IFeed} the message was published to (set at
        construction: a message from the wire has its feed from the start).
    @return: the L{Message}.
    """
    headers = dict(getattr(properties, "headers", None) or {})
    routingKey = _text(headers.get(ADDRESS, routingKey))
    props: Dict[str, str] = {}
    for name in ("reply_to", "message_id", "correlation_id", "delivery_mode", "priority",
                 "expiration", "timestamp", "type", "user_id", "app_id"):
        value = getattr(properties, name, None)
        if value is not None:
            props[name] = _text(value)
    if headers.pop(DEFAULTED, None) is not None:
        props.pop("delivery_mode", None)
    parts = headers.pop(PARTS, None)
    contentType = getattr(properties, "content_type", None)
    if parts is not None and isinstance(parts, list):
        contents = []
        at = 0
        for part in parts:
            length = int(part.get("length", 0))
            contents.append(Content(_text(part.get("type", "")), body[at : at + length]))
            at += length
        contents = tuple(contents)
    elif contentType is not None or body:
        contents = (Content(_text(contentType or "application/octet-stream"), body),)
    else:
        contents = ()
    out: Dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(PROPERTY):
            props[name[len(PROPERTY):]] = _text(value)
        elif name.startswith(HEADER):
            out[name[len(HEADER):]] = _text(value)
        elif name.startswith(RESERVED) or name in _BROKER_HEADERS:
            continue
        else:
            out[name] = _text(value)
    return Message(address=routingKey, properties=props, headers=out, contents=contents, feed=feed)
