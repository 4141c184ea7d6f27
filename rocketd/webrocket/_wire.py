"""
The WebSocket frontend's wire format: client frames in, server frames out.

Every frame is JSON text with exactly one key, C{{"eventName": {...}}}.
Server event names start with C{:}. A server frame is built once and its
bytes, a complete (unmasked, uncompressed) WebSocket text frame, go as they
are to every connection that receives it; the frame of a channel message is
cached on the L{Message}, so N subscribers cost one encoding.
"""

from __future__ import annotations

import json
from typing import Optional, Tuple

from autobahn.websocket.protocol import PreparedMessage

from rocketd.engine.message import Content, Message
from rocketd.http.strictjson import encodeCompact as encodeJSON
from rocketd.http.strictjson import rejectConstant

#: The key of a channel message's WebSocket frame in L{Message.cache}
#: (the value is the frame's bytes, or None for a message that is not a
#: frontend event).
WS_FRAME = ("webrocket", "ws-frame")
#: The header that says who published a channel message: L{BROADCAST}
#: (a browser), L{PRESENCE} (the frontend's member events); absent for the
#: backend's fired events.
ORIGIN_HEADER = "webrocket-origin"
BROADCAST = "broadcast"
PRESENCE = "presence"

#: The client events.
CLIENT_EVENTS = ("auth", "subscribe", "unsubscribe", "broadcast", "trigger", "close")

#: The error codes and their status sentences.
BAD_REQUEST = 400
UNAUTHORIZED = 402
FORBIDDEN = 403
INVALID_CHANNEL_NAME = 451
NOT_SUBSCRIBED = 453
CHANNEL_NOT_FOUND = 454
INTERNAL_ERROR = 597
STATUS = {
    BAD_REQUEST: "Bad request",
    UNAUTHORIZED: "Unauthorized",
    FORBIDDEN: "Forbidden",
    INVALID_CHANNEL_NAME: "Invalid channel name",
    NOT_SUBSCRIBED: "Not subscribed",
    CHANNEL_NOT_FOUND: "Channel not found",
    INTERNAL_ERROR: "Internal error",
}


class FrontendError(Exception):
    """A client request that is answered with an C{:error} frame of this code."""

    def __init__(self, code: int):
        Exception.__init__(self, code)
        self.code = code


def textFrame(payload: bytes) -> bytes:
    """@return: the bytes of one server-to-client WebSocket text frame carrying C{payload}."""
    return PreparedMessage(payload, False, False, True).payloadHybi


def serverFrame(event: str, body: dict) -> bytes:
    """@return: the frame of the server event C{{event: body}}."""
    return textFrame(encodeJSON({event: body}))


def errorFrame(code: int) -> bytes:
    """@return: the frame C{{":error": {"code": N, "status": "..."}}}."""
    return serverFrame(":error", {"code": code, "status": STATUS[code]})


def parseClientFrame(payload, isBinary: bool) -> Tuple[str, dict]:
    """
    Read one client frame.

    @return: C{(eventName, body)}: a known client event and its object.
    @raise FrontendError: 400 for a binary frame, text that is not JSON,
        not an object with exactly one key whose value is an object, or an
        unknown event name.
    """
    if isBinary:
        raise FrontendError(BAD_REQUEST)
    try:
        document = json.loads(payload, parse_constant=rejectConstant)
    except (ValueError, RecursionError, TypeError):
        raise FrontendError(BAD_REQUEST)
    if not isinstance(document, dict) or len(document) != 1:
        raise FrontendError(BAD_REQUEST)
    ((name, body),) = document.items()
    if name not in CLIENT_EVENTS or not isinstance(body, dict):
        raise FrontendError(BAD_REQUEST)
    return name, body


def channelMessage(event: str, body: dict, origin: str) -> Message:
    """
    A message for a channel's feed, published by the frontend: address =
    the event name, one C{application/json} content C{{event: body}}, and
    its frame already built (so the feed's subscribers share it).

    @param origin: L{BROADCAST} or L{PRESENCE}, kept in L{ORIGIN_HEADER}.
    @raise ValueError: C{body} can't be written as JSON.
    """
    content = encodeJSON({event: body})
    message = Message(
        address=event,
        headers={ORIGIN_HEADER: origin},
        contents=(Content("application/json", content),),
    )
    message.cache[WS_FRAME] = textFrame(content)
    return message


def notBroadcast(message: Message) -> bool:
    """The join predicate of a hidden subscriber: everything but broadcasts."""
    return message.headers.get(ORIGIN_HEADER) != BROADCAST


_UNBUILT = object()


def channelFrame(message: Message) -> Optional[bytes]:
    """
    The WebSocket frame of a message routed to a channel, built once and
    cached on the message.

    A message is a frontend event when it has exactly one
    C{application/json} content that is a JSON object with exactly one
    key (what the backend API fires, browsers broadcast and the presence
    events are); anything else that reaches a channel's feed (a RestMS
    client may publish there) is not sent to browsers.

    @return: the frame's bytes, or None.
    """
    cache = message.cache
    frame = cache.get(WS_FRAME, _UNBUILT)
    if frame is not _UNBUILT:
        return frame
    frame = None
    if len(message.contents) == 1:
        content = message.contents[0]
        if content.type.split(";", 1)[0].strip().lower() == "application/json":
            try:
                # Text frames are UTF-8: other encodings of JSON are refused.
                document = json.loads(content.body.decode("utf-8"), parse_constant=rejectConstant)
            except (ValueError, RecursionError, TypeError):
                document = None
            if isinstance(document, dict) and len(document) == 1:
                frame = textFrame(content.body)
    cache[WS_FRAME] = frame
    return frame
