"""
Log formats: the access log (combined or JSON, one line per request) and
the daemon's JSON log observer (one object per line, from Twisted's
C{eventAsJSON}).

Secrets never reach a line: the access log keeps a request's path and
the names of its query arguments but not their values (a single-use
browser token travels in a query string), nor those of the Referer; it
writes no request header but the User-Agent and Referer (never
Authorization, a Cookie or the admin cookie header).
"""

from __future__ import annotations

import json
import re
from typing import IO
from urllib.parse import parse_qsl

from twisted.logger import ILogObserver, eventAsJSON, formatEvent
from twisted.web.http import datetimeToLogString
from zope.interface import implementer

#: What a query argument's value becomes in the access log.
REDACTED = "-"



#: A query argument name the access log keeps: short, a word. A longer
#: one (C{?0123...}: a token given as a bare argument) is redacted too.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,23}\Z")


def redactQuery(uri: str) -> str:
    """
    @return: C{uri} with the value of each query argument replaced by
        L{REDACTED}, and each name too unless it is a short word:
        C{/moon?token=abc&0123abcd...} -> C{/moon?token=-&-=-}.
    """
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    names = [name if _NAME.match(name) else REDACTED for name, _ in parse_qsl(query, keep_blank_values=True)]
    if not names:
        return path + "?" + REDACTED if query else uri
    return path + sep + "&".join(f"{name}={REDACTED}" for name in names)


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value


def _fields(timestamp: str, request) -> dict:
    """The access log's fields of one request, secrets redacted."""
    referrer = _text(request.getHeader(b"referer") or b"")
    return {
        "time": timestamp.strip("[]"),
        "remote": _text(getattr(request.getClientAddress(), "host", "-")),
        "method": _text(request.method),
        "uri": redactQuery(_text(request.uri)),
        "protocol": _text(request.clientproto),
        "status": request.code,
        "bytes": request.sentLength,
        "referrer": redactQuery(referrer) if referrer else "",
        "agent": _text(request.getHeader(b"user-agent") or b""),
    }


def _quoted(value: str) -> str:
    """A combined-format field: quotes and control bytes escaped, as Twisted does."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def combinedFormatter(timestamp: str, request) -> str:
    """
    The combined log format, as Twisted's C{combinedLogFormatter}, with
    the query values of the URI and the Referer redacted.
    """
    f = _fields(timestamp, request)
    return '"%s" - - %s "%s %s %s" %d %s "%s" "%s"' % (
        f["remote"],
        timestamp,
        _quoted(f["method"]),
        _quoted(f["uri"]),
        _quoted(f["protocol"]),
        f["status"],
        f["bytes"] or "-",
        _quoted(f["referrer"] or "-"),
        _quoted(f["agent"] or "-"),
    )


def jsonFormatter(timestamp: str, request) -> str:
    """One JSON object per request: the combined format's fields, by name."""
    return json.dumps(_fields(timestamp, request), ensure_ascii=False)


#: The access log's formatters by C{[rocketd] access_log_format}.
ACCESS_LOG_FORMATTERS = {"combined": combinedFormatter, "json": jsonFormatter}


class AccessLog:
    """
    The access log of every listener: one file, opened once in append
    mode (so that the lines of several sites never overwrite each other,
    and an external rotation that moves the file is followed after a
    restart), one line per request, written as the request ends.

    @param path: the file.
    @param formatter: C{formatter(timestamp, request) -> str}, one of
        L{ACCESS_LOG_FORMATTERS}.
    @param clock: an C{IReactorTime} for the timestamps.
    """

    def __init__(self, path: str, formatter, clock):
        self._path = path
        self._formatter = formatter
        self._clock = clock
        self._file = None
        self._second = None
        self._stamp = ""

    def _timestamp(self) -> str:
        second = int(self._clock.seconds())
        if second != self._second:
            self._second, self._stamp = second, datetimeToLogString(second)
        return self._stamp

    def write(self, request) -> None:
        if self._file is None:
            self._file = open(self._path, "a", 1, encoding="utf-8", newline="\n")
        self._file.write(self._formatter(self._timestamp(), request) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each event as one JSON object on one line (Twisted's
    C{eventAsJSON}), with the formatted sentence added as C{text} so that
    a log pipeline (journald, Loki, Elastic) need not format it.
    """

    def __init__(self, outFile: IO[str]):
        self._outFile = outFile

    def __call__(self, event: dict) -> None:
        event = dict(event)
        event.setdefault("text", formatEvent(event))
        self._outFile.write(eventAsJSON(event) + "\n")
        flush = getattr(self._outFile, "flush", None)
        if flush is not None:
            flush()
