"""
Messages and contents: values, immutable once published, shared by every
pipe and listener of a process that they reach.

A message published to a feed is one L{Message} object; the embedded
engine hands that same object to every pipe and listener, and an engine
that carries messages between processes builds one L{Message} per delivery
to a process and hands that one object to all of the process's pipes and
listeners. So a face serialises it once per representation and process,
and keeps the bytes in L{Message.cache}.

Once published, a message does not change: its C{feed} is written once, by
the engine that accepts the publish, and only C{cache} (a memo of the
faces, of no engine's concern) is filled afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

#: The AMQP basic properties a message may carry, in document order.
PROPERTY_NAMES: Tuple[str, ...] = (
    "reply_to",
    "message_id",
    "correlation_id",
    "delivery_mode",
    "priority",
    "expiration",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "sender_id",
)


@dataclass(frozen=True)
class Content:
    """
    A body of bytes with its MIME type.

    @ivar type: the MIME type, e.g. C{"text/plain"}.
    @ivar body: the raw bytes.
    """

    type: str
    body: bytes

    @property
    def length(self) -> int:
        return len(self.body)


@dataclass(eq=False)
class Message:
    """
    One message as published and as delivered. A face builds it (without a
    C{feed}) and publishes it; from then on nobody changes its address,
    properties, headers or contents.

    @ivar address: the routing address (a literal, never a pattern).
    @ivar properties: AMQP-style properties by name (see L{PROPERTY_NAMES});
        values are strings.
    @ivar headers: application headers, name to value, in order.
    @ivar contents: the message's contents (zero or more; RestMS apps use one).
    @ivar feed: the L{rocketd.interfaces.IFeed} the message was published
        to, None before. Write-once: the engine sets it, on this object,
        as it accepts the publish (before any pipe, consumer or listener
        sees the message), and never again (a message the default feed
        passes on to a service feed keeps the default feed; republishing
        it elsewhere is refused). An engine that builds the message from
        the wire sets it at construction. A face never sets it (a copy
        made to render a view of the message, never published, keeps it).
    @ivar cache: a process-local memo of the faces: their encodings of this
        message, per representation, filled lazily so that N deliveries in
        a process cost one encoding. Engines never read, compare, transport
        or persist it; a message built from the wire starts with an empty
        one. Not part of the message's value (not in C{repr}).
    """

    address: str = ""
    properties: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    contents: Tuple[Content, ...] = ()
    feed: Optional[object] = None
    cache: Dict[object, object] = field(default_factory=dict, repr=False)

    @property
    def reply_to(self) -> Optional[str]:
        return self.properties.get("reply_to")
