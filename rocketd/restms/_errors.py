"""
The RestMS face's errors, and the one place engine and codec errors become
HTTP statuses.
"""

from __future__ import annotations

from typing import Optional, Tuple

from rocketd import errors
from rocketd.restms.codec import CodecError

#: Engine and codec exceptions, most specific first, with their status.
_STATUSES = (
    (errors.ContentGone, 404),
    (errors.NoSuchResource, 404),
    (errors.Conflict, 409),
    (errors.InvalidName, 400),
    (errors.InvalidArgument, 400),
    (errors.Forbidden, 403),
    (errors.LimitReached, 507),
    (CodecError, 400),
)


class RestMSError(Exception):
    """
    An answer the face gives instead of a document: a status and one
    sentence for the client.
    """

    def __init__(self, status: int, sentence: str):
        Exception.__init__(self, status, sentence)
        self.status = status
        self.sentence = sentence


def forbidden(sentence: str) -> RestMSError:
    return RestMSError(403, sentence)


def notFound(sentence: str) -> RestMSError:
    return RestMSError(404, sentence)


def badRequest(sentence: str) -> RestMSError:
    return RestMSError(400, sentence)


def statusFor(exception: BaseException) -> Optional[Tuple[int, str]]:
    """
    The status and sentence for an exception, or None when it is not one a
    client caused (a bug: the caller answers 500).
    """
    if isinstance(exception, RestMSError):
        return exception.status, exception.sentence
    for kind, status in _STATUSES:
        if isinstance(exception, kind):
            if isinstance(exception, errors.EngineError):
                return status, exception.message
            return status, str(exception)
    return None
