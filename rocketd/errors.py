"""
Errors raised (as Deferred failures) by engine operations.

Every face maps these to its own wire errors (an HTTP status and body for
RestMS, a JSON error for WebRocket), so the engine never speaks HTTP.
"""


class EngineError(Exception):
    """
    Base class of every error an engine operation fails with.

    The first argument is one human-readable sentence that a face may show
    to a client as it is.
    """

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class NoSuchResource(EngineError):
    """The named domain, feed, pipe, join, message or content does not exist."""


class Conflict(EngineError):
    """A resource with that name exists with another type or shape."""


class InvalidName(EngineError):
    """A name does not follow the naming rules."""


class InvalidArgument(EngineError):
    """A type, address pattern, header or other argument is not acceptable."""


class Forbidden(EngineError):
    """The operation is never allowed on that resource (a default join, a system feed...)."""


class LimitReached(EngineError):
    """
    The engine keeps as much of something as it may (a feed's staged
    contents): the operation can succeed once some is used, deleted or
    expired.
    """


class ContentGone(NoSuchResource):
    """A staged content was already published or never existed."""


class EngineUnavailable(EngineError):
    """
    The engine cannot answer now (its broker is unreachable or the
    connection was lost): the operation may succeed later.

    @ivar retryAfter: seconds after which a retry may succeed (an int).
    """

    def __init__(self, sentence: str = "The message broker is unreachable; retry later.", retryAfter: int = 5):
        EngineError.__init__(self, sentence)
        self.retryAfter = retryAfter
