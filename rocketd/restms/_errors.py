"""
The RestMS face's errors: the statuses of L{rocketd.http.errors} (one
table for every face), plus the codec's, as one sentence for the client.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from rocketd.http.errors import HTTPError, answerOf
from rocketd.restms.codec import CodecError


class RestMSError(HTTPError):
    """
    An answer the face gives instead of a document: a status and one
    sentence for the client.
    """

    def __init__(self, status: int, sentence: str):
        HTTPError.__init__(self, status, sentence)


def forbidden(sentence: str) -> RestMSError:
    return RestMSError(403, sentence)


def notFound(sentence: str) -> RestMSError:
    return RestMSError(404, sentence)


def badRequest(sentence: str) -> RestMSError:
    return RestMSError(400, sentence)


def statusFor(exception: BaseException) -> Optional[Tuple[int, str, Sequence[Tuple[bytes, bytes]]]]:
    """
    The status, sentence and headers (such as C{Retry-After} with a 503
    while the engine is unavailable) for an exception, or None when it is
    not one a client caused (a bug: the caller answers 500).
    """
    if isinstance(exception, CodecError):
        return 400, str(exception), ()
    return answerOf(exception)
