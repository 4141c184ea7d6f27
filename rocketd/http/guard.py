"""
The site every listener serves: L{BoundedSite}'s bounded bodies, plus two
guards that no route can forget.

  - The C{Host} header is checked before any resource sees the request
    (L{rocketd.http.hosts.neutraliseHost}): a value that is not a plain
    host is replaced with the listening address, so neither the URIs a
    face writes nor Klein's router (werkzeug refuses a name that does not
    encode as IDNA) ever get it.
  - An exception no resource handled is the last resort's: instead of
    twisted.web's HTML "Processing Failed", the request is answered 500
    in its face's format (the site's C{internalError} gives the body), and
    the traceback is logged once, with the method and URI.
"""

from __future__ import annotations

from typing import Callable, Tuple

from twisted.logger import Logger
from twisted.web.http import INTERNAL_SERVER_ERROR

from rocketd.http.hosts import neutraliseHost
from rocketd.http.limits import BoundedRequest, BoundedSite

#: What a site's C{internalError} returns: (Content-Type, body).
ErrorAnswer = Tuple[bytes, bytes]

#: The sentence of a last-resort 500.
INTERNAL_ERROR = "The server failed to answer this request; its log has the details."


def plainInternalError(request) -> ErrorAnswer:
    """The default last-resort answer: one plain-text sentence."""
    return (b"text/plain; charset=utf-8", INTERNAL_ERROR.encode("utf-8") + b"\n")


#: Response headers a last-resort answer must not keep from the failed handler.
_STALE = (b"etag", b"last-modified", b"location", b"content-location", b"link", b"vary", b"content-encoding")


def _text(value) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


class GuardedRequest(BoundedRequest):
    """
    A L{BoundedRequest} whose C{Host} is neutralised before dispatch and
    whose unhandled failures are answered by its site's C{internalError}
    (see the module docstring). It only works on a L{GuardedSite}.
    """

    log = Logger()

    def process(self):
        neutraliseHost(self)
        BoundedRequest.process(self)

    def processingFailed(self, reason):
        """
        The last resort: log the failure once and answer 500 in the face's
        format. When the response has already started, its status can't
        change: the connection is closed, so the client does not take a
        truncated body for a whole one.

        @return: C{reason}, as L{twisted.web.server.Request.processingFailed} does.
        """
        self.log.failure(
            "{method} {uri} failed; answered 500",
            reason,
            method=_text(self.method),
            uri=_text(self.uri),
        )
        if self.finished or self.channel is None:
            return reason
        if self.startedWriting:
            self.loseConnection()
            return reason
        site = self.channel.site
        try:
            contentType, body = site.internalError(self)
        except Exception:
            self.log.failure("internalError failed; answering in plain text")
            contentType, body = plainInternalError(self)
        for name in _STALE:
            self.responseHeaders.removeHeader(name)
        self.setResponseCode(INTERNAL_SERVER_ERROR)
        self.setHeader(b"Content-Type", contentType)
        self.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.write(body)
        self.finish()
        return reason


class GuardedSite(BoundedSite):
    """
    A L{BoundedSite} of L{GuardedRequest}s.

    @ivar internalError: C{callable(request) -> (contentType, body)}, both
        bytes: the last-resort 500 answer in the face's format
        (C{request.path} and the request headers are available).
    """

    requestFactory = GuardedRequest

    def __init__(
        self,
        resource,
        maxBody: int,
        *args,
        internalError: Callable[..., ErrorAnswer] = plainInternalError,
        **kwargs,
    ):
        """
        @param internalError: builds the last-resort 500 answer.
        @param args: passed to L{BoundedSite} (C{tooLargeBody}).
        @param kwargs: passed to L{BoundedSite}.
        """
        BoundedSite.__init__(self, resource, maxBody, *args, **kwargs)
        self.internalError = internalError
