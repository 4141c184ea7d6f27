"""
JSON as both faces write and read it on the wire: strict (no C{NaN},
C{Infinity} or C{-Infinity}, which are not JSON, either way) and, on the
way out, compact UTF-8.
"""

from __future__ import annotations

import json


def rejectConstant(name: str):
    """
    The C{parse_constant} of every decoder: C{NaN} and the infinities are
    refused.

    @raise ValueError: always.
    """
    raise ValueError(f"{name} is not a JSON value")


#: One encoder for every document (json.dumps with options builds one per call).
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encodeCompact(document) -> bytes:
    """
    @return: C{document} as compact UTF-8 JSON.
    @raise ValueError: it holds C{NaN} or an infinity.
    @raise TypeError: it holds something JSON can't write.
    """
    return _COMPACT.encode(document).encode("utf-8")
