"""
Unguessable resource hashes.

A hash is 24 URL-safe base64 characters carrying 144 random bits from the
operating system's CSPRNG. Random bytes are drawn in batches and sliced on
3-byte boundaries, so each hash is independent of the others and drawing
one costs a slice instead of a system call (delivery to a pipe draws one).
"""

import base64
import secrets

#: Random bytes per hash: 18 bytes encode to exactly 24 characters, no padding.
HASH_BYTES = 18
#: The length of every hash.
HASH_LENGTH = 24
_BATCH = 256


class HashSource:
    """
    Draws hashes from batches of random bytes.
    """

    __slots__ = ("_text", "_pos")

    def __init__(self):
        self._text = ""
        self._pos = 0

    def draw(self) -> str:
        """
        @return: a new hash: 24 characters of C{[A-Za-z0-9_-]}.
        """
        pos = self._pos
        if pos >= len(self._text):
            raw = secrets.token_bytes(HASH_BYTES * _BATCH)
            self._text = base64.urlsafe_b64encode(raw).decode("ascii")
            pos = 0
        self._pos = pos + HASH_LENGTH
        return self._text[pos : pos + HASH_LENGTH]
