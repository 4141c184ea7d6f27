"""
What the load client writes and reads, without any I/O: the benchmark
payload and its check, HTTP/1.1 requests and response heads, chunked
bodies, server-sent event streams and WebSocket frames.

Every parser here is incremental (it takes bytes as they arrive and keeps
what is not complete yet) and works on whole batches: the expensive part,
finding and checking the payloads, is one regular-expression scan per
batch of frames rather than Python code per byte.

The payload (C{size} bytes, 100 by default) is ASCII, so it travels
unchanged inside JSON strings and SSE lines::

    ~0000000042.1795332883123456789.qqqqqqqq...q
    ^ a marker no framing around it holds (the scan starts at each one)
     ^ sequence ^ time.time_ns() at publish  ^ filler: one letter, chosen by
       (10 digits) (19 digits)                 the sequence, to the full size
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
from array import array
from typing import Dict, List, Optional, Tuple

#: The bytes before the filler: the marker, 10 digits, a dot, 19 digits, a dot.
PAYLOAD_HEAD = 32
#: The smallest payload size (the head and a few filler letters).
MIN_PAYLOAD = PAYLOAD_HEAD + 4


def fillerLetter(sequence: int) -> int:
    """@return: the filler's letter (a byte value) for a sequence number."""
    return 97 + sequence % 26


def makePayload(sequence: int, timestamp: int, size: int) -> bytes:
    """
    @param sequence: the message's sequence number (0 to 10**10 - 1).
    @param timestamp: C{time.time_ns()} when it is published.
    @param size: the payload's length in bytes (at least L{MIN_PAYLOAD}).
    @return: the payload.
    """
    return b"~%010d.%019d." % (sequence, timestamp) + bytes((fillerLetter(sequence),)) * (size - PAYLOAD_HEAD)


def payloadPattern(size: int) -> "re.Pattern[bytes]":
    """
    @return: a pattern that matches one payload of C{size} bytes, with
        groups (sequence, timestamp, filler); L{Tally} checks the filler
        (a payload with a filler byte added or removed does not match).
    """
    if size < MIN_PAYLOAD:
        raise ValueError(f"the payload needs at least {MIN_PAYLOAD} bytes")
    return re.compile(rb"~([0-9]{10})\.([0-9]{19})\.([a-z]{%d})(?![a-z])" % (size - PAYLOAD_HEAD))


def fillers(size: int) -> List[bytes]:
    """@return: the filler of each sequence modulo 26, for a payload size."""
    return [bytes((97 + i,)) * (size - PAYLOAD_HEAD) for i in range(26)]


_patterns: Dict[int, "re.Pattern[bytes]"] = {}
_fillerTables: Dict[int, List[bytes]] = {}


class Tally:
    """
    What one subscriber received: every sequence number must arrive
    exactly once and intact.

    @ivar expected: how many messages are published (sequences 0 to
        C{expected - 1}).
    @ivar received: payloads that matched, duplicates included.
    @ivar duplicates: payloads whose sequence had arrived before.
    @ivar corrupt: frames that held no intact payload, or one with a
        sequence out of range or the wrong filler.
    @ivar latencies: an C{array('q')} to which each first delivery's
        latency (receive time minus the payload's timestamp, in
        nanoseconds) is appended; shared by the subscribers of a process.
    @ivar last: C{time.time_ns()} of the last delivery, or 0.
    """

    __slots__ = ("expected", "received", "duplicates", "corrupt", "latencies", "last", "_seen", "_pattern", "_unique",
                 "_fillers")

    def __init__(self, expected: int, size: int, latencies: Optional[array] = None):
        self.expected = expected
        self.received = 0
        self.duplicates = 0
        self.corrupt = 0
        self.latencies = latencies if latencies is not None else array("q")
        self.last = 0
        self._seen = bytearray(expected)
        self._pattern = _patterns.get(size) or _patterns.setdefault(size, payloadPattern(size))
        self._fillers = _fillerTables.get(size) or _fillerTables.setdefault(size, fillers(size))
        self._unique = 0

    @property
    def complete(self) -> bool:
        """Whether every sequence has arrived."""
        return self._unique == self.expected

    @property
    def missing(self) -> int:
        """How many sequences have not arrived."""
        return self.expected - self._unique

    def add(self, data: bytes, frames: int, now: int) -> int:
        """
        Count a batch of frames.

        @param data: the frames' payload-bearing bytes (any framing around
            the payloads is allowed, as long as it holds no payload-like
            text).
        @param frames: how many message frames C{data} holds; each must
            hold exactly one intact payload.
        @param now: C{time.time_ns()} when the batch was read.
        @return: how many new sequences arrived.
        """
        matches = self._pattern.findall(data)
        if len(matches) != frames:
            self.corrupt += abs(frames - len(matches))
        seen = self._seen
        expected = self.expected
        latencies = self.latencies
        table = self._fillers
        new = 0
        for sequence, timestamp, filler in matches:
            sequence = int(sequence)
            if sequence >= expected or filler != table[sequence % 26]:
                self.corrupt += 1
            elif seen[sequence]:
                self.duplicates += 1
            else:
                seen[sequence] = 1
                new += 1
                latencies.append(now - int(timestamp))
        self.received += len(matches)
        self._unique += new
        if matches:
            self.last = now
        return new


# -- HTTP/1.1 ------------------------------------------------------------------


def formatRequest(method: str, path: str, host: str, headers: Dict[str, str] = {}, body: Optional[bytes] = None) -> bytes:
    """
    @return: one HTTP/1.1 request (keep-alive), with C{Content-Length}
        when there is a body.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body is not None else head


def parseHead(head: bytes) -> Tuple[int, Dict[str, str]]:
    """
    @param head: a response head, without its final blank line.
    @return: the status and the headers (lower-case names; repeated
        headers joined with C{", "}).
    @raise ValueError: not an HTTP/1.x status line.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    return int(parts[1]), headers


class ChunkedDecoder:
    """
    Decodes a chunked body as it arrives.

    @ivar done: whether the last (empty) chunk has arrived.
    """

    __slots__ = ("_pending", "done")

    def __init__(self):
        self._pending = b""
        self.done = False

    def feed(self, data: bytes) -> Tuple[List[bytes], bytes]:
        """
        @return: the chunks completed by C{data}, and whatever follows the
            body once it is done (the start of the next response).
        @raise ValueError: a malformed chunk size.
        """
        if self._pending:
            data = self._pending + data
        chunks = []
        find = data.find
        position = 0
        end = len(data)
        while not self.done:
            eol = find(b"\r\n", position)
            if eol < 0:
                break
            try:
                size = int(data[position:eol], 16)
            except ValueError:
                # A chunk extension (";name=value"): ignored.
                size = int(data[position:eol].split(b";", 1)[0], 16)
            start = eol + 2
            stop = start + size
            if stop + 2 > end:
                break
            if size == 0:
                # No trailers are expected: the body ends with a blank line.
                position = stop + 2
                self.done = True
                break
            chunks.append(data[start:stop])
            position = stop + 2
        if self.done:
            self._pending = b""
            return chunks, data[position:]
        self._pending = data[position:]
        return chunks, b""


class EventStreamSplitter:
    """
    Splits a server-sent event stream into batches of complete events.
    """

    __slots__ = ("_pending",)

    def __init__(self):
        self._pending = b""

    def feed(self, data: bytes) -> Tuple[bytes, int]:
        """
        @return: the complete events that C{data} finishes (bytes, ending
            at an event's blank line), and how many of them carry data
            (comments such as heartbeats do not count).
        """
        if self._pending:
            data = self._pending + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b"", 0
        complete = data[: end + 2]
        self._pending = data[end + 2 :]
        frames = complete.count(b"\ndata:") + complete.startswith(b"data:")
        return complete, frames


# -- WebSocket (RFC 6455), client side ---------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def websocketKey() -> str:
    """@return: a fresh C{Sec-WebSocket-Key}."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def websocketAccept(key: str) -> str:
    """@return: the C{Sec-WebSocket-Accept} a server answers to C{key}."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def upgradeRequest(path: str, host: str, key: str, headers: Dict[str, str] = {}) -> bytes:
    """@return: the opening handshake's request."""
    return formatRequest(
        "GET",
        path,
        host,
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            **headers,
        },
    )


def encodeFrame(opcode: int, payload: bytes, mask: Optional[bytes] = None) -> bytes:
    """
    @param mask: 4 bytes to mask with (a client must mask every frame), or
        None for a fresh random one.
    @return: one final frame.
    """
    if mask is None:
        mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return head + mask + masked


class FrameDecoder:
    """
    Decodes the frames a server sends (unmasked), joining fragmented
    messages.
    """

    __slots__ = ("_pending", "_fragments", "_fragmentOpcode")

    def __init__(self):
        self._pending = b""
        self._fragments: List[bytes] = []
        self._fragmentOpcode = 0

    def feed(self, data: bytes) -> List[Tuple[int, bytes]]:
        """
        @return: the complete messages and control frames in arrival
            order, as (opcode, payload); a fragmented message comes out
            whole, with its first frame's opcode.
        @raise ValueError: a masked frame from the server.
        """
        if self._pending:
            data = self._pending + data
        out = []
        position = 0
        end = len(data)
        while end - position >= 2:
            b0 = data[position]
            length = data[position + 1]
            if length & 0x80:
                raise ValueError("the server sent a masked frame")
            start = position + 2
            if length == 126:
                if end - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            stop = start + length
            if stop > end:
                break
            position = stop
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode != OP_CONTINUATION:
                out.append((opcode, data[start:stop]))
            elif opcode >= 8:
                out.append((opcode, data[start:stop]))
            elif opcode == OP_CONTINUATION:
                self._fragments.append(data[start:stop])
                if b0 & 0x80:
                    out.append((self._fragmentOpcode, b"".join(self._fragments)))
                    self._fragments = []
            else:
                self._fragmentOpcode = opcode
                self._fragments = [data[start:stop]]
        self._pending = data[position:]
        return out
