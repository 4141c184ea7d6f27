"""
The benchmark suite (C{benchmarks/}) must not rot: its wire parsers are
checked here byte by byte, and the one command runs every workload at tiny
counts against a real rocketd (always) and a real nchan (when nginx and
the nchan module are installed). The full runs are not part of the test
suite: see C{benchmarks/README.md}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from unittest import SkipTest

from twisted.trial.unittest import TestCase

from benchmarks.servers import ROOT, VENV_COMMAND, canRunRocketd, findNchan, findPython, useProjectPython
from benchmarks.wire import (
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    ChunkedDecoder,
    EventStreamSplitter,
    FrameDecoder,
    Tally,
    encodeFrame,
    formatRequest,
    makePayload,
    parseHead,
    websocketAccept,
)

#: The longest one quick run of the suite may take (it takes seconds).
QUICK_TIMEOUT = 150


def _serverFrame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    """An unmasked frame, as a server sends it."""
    head = bytes([(0x80 if final else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class PayloadTests(TestCase):
    """Every payload is checked: lost, duplicated and corrupt ones are counted."""

    def test_roundTrip(self):
        """Intact payloads in any framing count once each, with their latency."""
        tally = Tally(3, 100)
        payloads = [makePayload(i, 1000 + i, 100) for i in range(3)]
        self.assertEqual([len(p) for p in payloads], [100] * 3)
        data = b"".join(b'data: {"p":"%s"}\n\n' % p for p in payloads)
        self.assertEqual(tally.add(data, 3, 5000), 3)
        self.assertTrue(tally.complete)
        self.assertEqual((tally.missing, tally.duplicates, tally.corrupt), (0, 0, 0))
        self.assertEqual(sorted(tally.latencies), [3998, 3999, 4000])

    def test_duplicateAndMissing(self):
        tally = Tally(3, 100)
        p = makePayload(1, 0, 100)
        tally.add(p + b"\n" + p, 2, 1)
        self.assertEqual((tally.received, tally.duplicates, tally.missing), (2, 1, 2))
        self.assertFalse(tally.complete)

    def test_corrupt(self):
        """A changed, shortened or out-of-range payload, or a frame with none, is corrupt."""
        good = makePayload(7, 0, 100)
        changed = good[:60] + (b"x" if good[60:61] != b"x" else b"y") + good[61:]
        shortened = good[:-1]
        outOfRange = makePayload(99, 0, 100)
        tally = Tally(10, 100)
        tally.add(b"\n".join([changed, shortened, outOfRange, b"no payload here"]), 4, 0)
        self.assertEqual(tally.corrupt, 4)
        self.assertEqual(tally.missing, 10)

    def test_otherSize(self):
        tally = Tally(1, 40)
        self.assertEqual(tally.add(makePayload(0, 0, 40), 1, 0), 1)
        self.assertEqual(Tally(1, 41).add(makePayload(0, 0, 40), 1, 0), 0)


class HTTPTests(TestCase):
    def test_formatRequest(self):
        self.assertEqual(
            formatRequest("POST", "/pub?id=c", "h:1", {"Content-Type": "text/plain"}, b"abc"),
            b"POST /pub?id=c HTTP/1.1\r\nHost: h:1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
        )

    def test_parseHead(self):
        status, headers = parseHead(b"HTTP/1.1 201 Created\r\nLocation: /x\r\nLink: <a>\r\nlink: <b>")
        self.assertEqual(status, 201)
        self.assertEqual(headers, {"location": "/x", "link": "<a>, <b>"})
        self.assertRaises(ValueError, parseHead, b"SSH-2.0-x")

    def test_chunkedInPieces(self):
        """Chunks come out whole however the bytes are split; what follows the body is returned."""
        body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\nNEXT"
        for cut in range(1, len(body)):
            decoder = ChunkedDecoder()
            first, rest1 = decoder.feed(body[:cut])
            second, rest2 = decoder.feed(body[cut:])
            self.assertEqual(first + second, [b"hello", b"abc"], cut)
            self.assertTrue(decoder.done)
            self.assertEqual(rest1 + rest2, b"NEXT")

    def test_eventStream(self):
        """Complete events only; comments are not counted as frames; CRLF is accepted."""
        splitter = EventStreamSplitter()
        self.assertEqual(splitter.feed(b": ok\n\nid: 1\ndata: a"), (b": ok\n\n", 0))
        self.assertEqual(splitter.feed(b"\n\ndata: b\r\n\r\nda"), (b"id: 1\ndata: a\n\ndata: b\n\n", 2))
        self.assertEqual(splitter.feed(b"ta: c\n\n"), (b"data: c\n\n", 1))


class WebSocketTests(TestCase):
    def test_acceptKey(self):
        """The example of RFC 6455, section 1.3."""
        self.assertEqual(websocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    def test_masking(self):
        """Client frames are masked; unmasking gives the payload back."""
        for payload in (b"", b"x", b"hello", b"a" * 200, b"b" * 70000):
            frame = encodeFrame(OP_TEXT, payload, b"\x01\x02\x03\x04")
            self.assertEqual(frame[0], 0x81)
            self.assertTrue(frame[1] & 0x80)
            masked = frame[-len(payload):] if payload else b""
            self.assertEqual(bytes(b ^ (1, 2, 3, 4)[i % 4] for i, b in enumerate(masked)), payload)

    def test_decodeInPieces(self):
        """Frames of every length encoding, fragmented messages and control frames, split anywhere."""
        stream = (
            _serverFrame(OP_TEXT, b"short")
            + _serverFrame(OP_TEXT, b"m" * 300)
            + _serverFrame(OP_TEXT, b"frag-", final=False)
            + _serverFrame(OP_PING, b"p")
            + _serverFrame(0, b"ment")
            + _serverFrame(OP_TEXT, b"L" * 70000)
            + _serverFrame(OP_CLOSE, b"\x03\xe8")
        )
        expected = [(OP_TEXT, b"short"), (OP_TEXT, b"m" * 300), (OP_PING, b"p"), (OP_TEXT, b"frag-ment"),
                    (OP_TEXT, b"L" * 70000), (OP_CLOSE, b"\x03\xe8")]
        for cut in (1, 2, 3, 7, 300, 320, len(stream) - 1):
            decoder = FrameDecoder()
            self.assertEqual(decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]), expected, cut)

    def test_maskedServerFrame(self):
        self.assertRaises(ValueError, FrameDecoder().feed, encodeFrame(OP_TEXT, b"x"))


def runSuite(testCase, servers: str) -> tuple:
    """
    Run C{benchmarks/run.py --quick} against C{servers}.

    @return: the JSON report.
    """
    report = os.path.abspath(testCase.mktemp() + ".json")
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--no-install",
         "--servers", servers, "--json", report],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT,
    )
    output = process.stdout[-4000:] + process.stderr[-4000:]
    testCase.assertEqual(process.returncode, 0, output)
    testCase.assertLess(time.monotonic() - started, QUICK_TIMEOUT)
    testCase.assertIn("| workload, figure |", process.stdout)
    with open(report) as f:
        return json.load(f), output


def checkRuns(testCase, result: dict, server: str, output: str) -> None:
    """Every case ran on C{server} and was valid (WebSocket cases may be pending), with figures."""
    runs = {r["case"]: r for r in result["runs"] if r["server"] == server}
    expected = {"W1-ws", "W1-ws-paced", "W1-sse", "W1-sse-paced", "W2", "W3-ws", "W3-sse"}
    if server == "rocketd":
        expected |= {"W2-restms", "W4-1", "W4-1-lockstep", "W4-n"}
    testCase.assertEqual(set(runs), expected, output)
    for case, run in runs.items():
        testCase.assertEqual(run["problems"], [], f"{case}: {output}")
        if run["pending"]:
            testCase.assertIn("-ws", case, f"only WebSocket cases may be pending: {case}: {run['pending']}")
            continue
        testCase.assertTrue(run["figures"], case)
        for name, value in run["figures"].items():
            if name == "rssPerConnection":
                # A few idle connections may fit in memory already mapped.
                testCase.assertGreaterEqual(value, 0, f"{case} {name}")
            elif not name.startswith("cpuPer"):
                # CPU per message may round to 0 at the clock tick's resolution.
                testCase.assertGreater(value, 0, f"{case} {name}")
    if "W1-sse" in runs:
        testCase.assertGreater(runs["W1-sse"]["figures"]["deliveredPerSecond"], 0)


class RocketdSmokeTests(TestCase):
    """The whole suite at tiny counts against rocketd from this checkout."""

    def test_everyWorkload(self):
        result, output = runSuite(self, "rocketd")
        checkRuns(self, result, "rocketd", output)
        labels = [line["label"] for line in result["table"]]
        self.assertIn("W4 RestMS fifo, 1 pipe: round trips", labels)


class NchanSmokeTests(TestCase):
    """The whole suite at tiny counts against nchan, when it is installed."""

    def setUp(self):
        if findNchan() is None:
            raise SkipTest(
                "nginx with the nchan module is not installed (Debian: apt-get install nginx libnginx-mod-nchan); "
                "benchmarks/run.py installs it when run as root"
            )

    def test_everyWorkload(self):
        result, output = runSuite(self, "nchan")
        checkRuns(self, result, "nchan", output)


def writeScript(path: str, body: str) -> str:
    """Write an executable shell script at C{path}; @return: C{path}."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


class ProjectPythonTests(TestCase):
    """
    C{benchmarks/run.py} runs everything with a Python that can run rocketd:
    the one that runs it, else the project's C{.venv}; without either it
    stops at once, saying how to run it.
    """

    def setUp(self):
        base = os.path.abspath(self.mktemp())
        #: A "Python" that cannot run rocketd (nor anything else).
        self.broken = writeScript(os.path.join(base, "broken", "python"), "exit 1")
        #: A project environment whose Python is this one.
        self.venvPython = writeScript(os.path.join(base, ".venv", "bin", "python"), f'exec "{sys.executable}" "$@"')
        self.missing = os.path.join(base, "nowhere", ".venv", "bin", "python")
        self.execs = []

    def execv(self, path, args):
        self.execs.append((path, args))

    def test_thisPython(self):
        """The tests' Python runs rocketd, so it is the one used, whatever .venv holds."""
        self.assertTrue(canRunRocketd(sys.executable))
        self.assertEqual(findPython(sys.executable, self.missing), sys.executable)
        self.assertIsNone(useProjectPython("benchmarks/run.py", ["--quick"], sys.executable, self.broken, self.execv))
        self.assertEqual(self.execs, [])

    def test_projectEnvironment(self):
        """A Python that cannot run rocketd hands over to the project's environment, with the same arguments."""
        self.assertFalse(canRunRocketd(self.broken))
        self.assertEqual(findPython(self.broken, self.venvPython), self.venvPython)
        self.assertIsNone(useProjectPython("benchmarks/run.py", ["--quick", "--json", "r.json"], self.broken,
                                           self.venvPython, self.execv))
        self.assertEqual(
            self.execs,
            [(self.venvPython, [self.venvPython, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--json",
                                "r.json"])],
        )

    def test_noEnvironment(self):
        """Without either, one sentence says how to make the environment and run the command."""
        for venvPython in (self.missing, self.broken):
            self.assertIsNone(findPython(self.broken, venvPython))
            stop = useProjectPython("benchmarks/run.py", [], self.broken, venvPython, self.execv)
            self.assertEqual(self.execs, [])
            self.assertNotIn(". ", stop)
            self.assertNotIn("\n", stop)
            self.assertTrue(stop.endswith(" there."), stop)
            self.assertTrue(stop.startswith("benchmarks/run.py: "), stop)
            self.assertIn(VENV_COMMAND, stop)
            self.assertIn("then run .venv/bin/python benchmarks/run.py", stop)

    def test_withoutTwisted(self):
        """
        Run as the README says with a Python that lacks Twisted (a bare
        virtual environment), C{benchmarks/run.py} measures rocketd with the
        checkout's C{.venv} if that can run it, else stops at once with the
        sentence; before, every rocketd case was INVALID (No module named
        'twisted.scripts').
        """
        bare = os.path.abspath(self.mktemp())
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", bare],
                       check=True, timeout=QUICK_TIMEOUT)
        python = os.path.join(bare, "bin", "python")
        self.assertFalse(canRunRocketd(python))
        report = os.path.abspath(self.mktemp() + ".json")
        process = subprocess.run(
            [python, os.path.join("benchmarks", "run.py"), "--quick", "--no-install", "--servers", "rocketd",
             "--workloads", "W2-restms", "--json", report],
            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=QUICK_TIMEOUT,
        )
        output = process.stdout[-4000:] + process.stderr[-4000:]
        venvPython = os.path.join(ROOT, ".venv", "bin", "python")
        if os.path.exists(venvPython) and canRunRocketd(venvPython):
            self.assertEqual(process.returncode, 0, output)
            self.assertIn(f"benchmarks/run.py: running with {venvPython}", process.stdout)
            with open(report) as f:
                result = json.load(f)
            self.assertEqual([(r["case"], r["problems"]) for r in result["runs"]], [("W2-restms", [])], output)
        else:
            self.assertEqual(process.returncode, 2, output)
            self.assertEqual(process.stdout, "")
            self.assertIn(VENV_COMMAND, process.stderr)
