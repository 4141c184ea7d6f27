"""
The one table of engine errors to HTTP statuses, and the error a face
raises to answer with a status of its own choosing.

Every face (RestMS, the WebRocket backend API, the admin API) answers an
engine failure with the status L{statusOf} gives it; the faces differ only
in the body they write (RestMS: one C{text/plain} sentence; the WebRocket
backend and the admin API: C{{"error": sentence}}). This is the only
module of L{rocketd.http} that knows a project module: L{rocketd.errors},
the engine's failures (see C{tests/test_layering.py}).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from rocketd.errors import (
    Conflict,
    EngineUnavailable,
    Forbidden,
    InvalidArgument,
    InvalidName,
    LimitReached,
    NoSuchResource,
)

#: Engine failures, most specific first, with their status.
STATUSES: Tuple[Tuple[type, int], ...] = (
    (NoSuchResource, 404),  # ContentGone included
    (InvalidName, 400),
    (InvalidArgument, 400),
    (Forbidden, 403),
    (Conflict, 409),
    (LimitReached, 507),
    (EngineUnavailable, 503),  # with Retry-After
)


def statusOf(error: BaseException) -> Optional[int]:
    """
    @return: the HTTP status of an engine failure, or None when C{error} is
        none of L{STATUSES} (not one a client caused: the face answers 500).
    """
    for kind, status in STATUSES:
        if isinstance(error, kind):
            return status
    return None


class HTTPError(Exception):
    """
    An answer a face gives instead of its result: a status, one sentence
    for the client (written in the face's body format) and the headers that
    go with it (C{Allow} for a 405, C{WWW-Authenticate} for a 401...).

    @ivar status: the HTTP status.
    @ivar sentence: the sentence, as the client reads it.
    @ivar headers: C{(name, value)} pairs of bytes.
    """

    def __init__(self, status: int, sentence: str, headers: Sequence[Tuple[bytes, bytes]] = ()):
        Exception.__init__(self, status, sentence)
        self.status = status
        self.sentence = sentence
        self.headers = headers


def answerOf(error: BaseException) -> Optional[Tuple[int, str, Sequence[Tuple[bytes, bytes]]]]:
    """
    @return: C{(status, sentence, headers)} for an L{HTTPError} or an engine
        failure of L{STATUSES}; None for anything else (a bug, or an engine
        failure no client caused: the face logs it and answers 500).
    """
    if isinstance(error, HTTPError):
        return error.status, error.sentence, error.headers
    status = statusOf(error)
    if status is None:
        return None
    if isinstance(error, EngineUnavailable):
        return status, error.message, ((b"Retry-After", b"%d" % error.retryAfter),)
    return status, error.message, ()
