"""
The request and response values of the hot routes, which both fronts of
the main listener share: twisted.web (L{writeResponse}) and the front door
(L{rocketd.http.frontdoor}).

A hot route's handler takes an L{Exchange} (the request value: method,
path, query, headers, body, peer, listening address; plus the part of
twisted.web's C{IRequest} a handler sets its answer with) and returns a
Deferred of an L{HTTPResponse} (status, headers, body). Whichever front
parsed the request, the same handler validates it, maps its failures and
renders its document: only the bytes on the wire are each front's own.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from io import BytesIO
from typing import List, Optional, Tuple
from urllib.parse import parse_qs

from twisted.web.http_headers import Headers

#: A response header: (name, value), both bytes, in the order they go out.
Header = Tuple[bytes, bytes]


class HTTPResponse:
    """
    A hot route's answer.

    @ivar status: the status code.
    @ivar headers: the handler's headers, in order (names as it set them).
    @ivar body: the whole body.
    """

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: List[Header], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"HTTPResponse({self.status!r}, {self.headers!r}, {self.body!r})"


class Exchange:
    """
    One hot request, as its handler sees it: the request value, and the
    subset of twisted.web's C{IRequest} the handlers answer with
    (C{setResponseCode}, C{setHeader}, C{responseHeaders}), collected into an
    L{HTTPResponse} by L{response}.

    @ivar method: the method (bytes, as sent).
    @ivar path: the path (bytes, no query, not decoded).
    @ivar query: the query string (bytes, without C{?}).
    @ivar requestHeaders: the request's L{Headers}.
    @ivar body: the request body (bytes).
    @ivar peer: the client's address (an C{IAddress}).
    @ivar host: the listening address (an C{IAddress}).
    """

    def __init__(self, method: bytes, path: bytes, query: bytes, headers: Headers, body: bytes, peer, host, secure=False):
        self.method = method
        self.path = path
        self.query = query
        self.requestHeaders = headers
        self.body = body
        self.peer = peer
        self.host = host
        self.secure = secure
        self.code = 200
        self.responseHeaders = Headers()
        self._args = None
        self._basic = None
        self._gone = False
        # What a handler's error path reads on a twisted.web request: an
        # exchange answers once, with its response value.
        self.finished = False
        self.startedWriting = False

    @classmethod
    def fromRequest(cls, request) -> "Exchange":
        """The request value of a twisted.web request whose body is in."""
        content = request.content
        if content is None:
            body = b""
        else:
            content.seek(0)
            body = content.read()
        uri = request.uri
        query = uri.split(b"?", 1)[1] if b"?" in uri else b""
        return cls(
            request.method,
            request.path,
            query,
            request.requestHeaders,
            body,
            request.getClientAddress(),
            request.getHost(),
            request.isSecure(),
        )

    # -- the request -----------------------------------------------------------

    @property
    def uri(self) -> bytes:
        return self.path + b"?" + self.query if self.query else self.path

    @property
    def args(self):
        if self._args is None:
            self._args = parse_qs(self.query, keep_blank_values=True) if self.query else {}
        return self._args

    @property
    def content(self):
        return BytesIO(self.body)

    @property
    def channel(self):
        """None once the client has gone (as twisted.web's lost request has no channel)."""
        return None if self._gone else self

    def abandon(self) -> None:
        """The client went away: the handler's answer has nowhere to go."""
        self._gone = True

    def getHeader(self, name: bytes) -> Optional[bytes]:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def getUser(self) -> bytes:
        """The HTTP Basic user (C{b""} without one), as twisted.web reads it."""
        return self._credentials()[0]

    def getPassword(self) -> bytes:
        """The HTTP Basic password (C{b""} without one), as twisted.web reads it."""
        return self._credentials()[1]

    def _credentials(self):
        if self._basic is None:
            self._basic = (b"", b"")
            value = self.getHeader(b"authorization")
            if value:
                try:
                    scheme, encoded = value.split()
                    if scheme.lower() == b"basic":
                        user, password = b64decode(encoded).split(b":", 1)
                        self._basic = (user, password)
                except (binascii.Error, ValueError):
                    pass
        return self._basic

    def getClientAddress(self):
        return self.peer

    def getHost(self):
        return self.host

    def isSecure(self) -> bool:
        return self.secure

    # -- the answer ------------------------------------------------------------

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def response(self, body: bytes) -> HTTPResponse:
        """The handler's answer: the status and headers set, and C{body}."""
        headers = [(name, value) for name, values in self.responseHeaders.getAllRawHeaders() for value in values]
        return HTTPResponse(self.code, headers, body)


def writeResponse(request, response: HTTPResponse) -> None:
    """Answer a twisted.web request with a response value (unless its client has gone)."""
    if request.finished or request.channel is None:
        return
    request.setResponseCode(response.status)
    for name, value in response.headers:
        request.responseHeaders.addRawHeader(name, value)
    if response.body:
        request.write(response.body)
    request.finish()
