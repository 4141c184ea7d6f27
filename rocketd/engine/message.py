"""
Messages and contents: immutable values shared by every pipe they reach.

A message published to a feed is one L{Message} object; routing hands the
same object to every pipe, so a face can serialise it once per
representation and cache the bytes in L{Message.cache}.
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
    One message as published and as delivered.

    @ivar address: the routing address (a literal, never a pattern).
    @ivar properties: AMQP-style properties by name (see L{PROPERTY_NAMES});
        values are strings.
    @ivar headers: application headers, name to value, in order.
    @ivar contents: the message's contents (zero or more; RestMS apps use one).
    @ivar feed: the L{rocketd.interfaces.IFeed} the message was published
        to; set by the engine when it routes the message (a message the
        default feed passes on to a service feed keeps the default feed).
    @ivar cache: a face's per-representation encodings of this message,
        filled lazily so that N deliveries cost one encoding.
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
