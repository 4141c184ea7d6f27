"""Helpers shared by the unit tests."""

import shutil
import struct
import tempfile

from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.python.filepath import FilePath


def parseResponse(raw: bytes):
    """
    Read one raw HTTP/1.1 response.

    @return: C{(status, headers, body, ended)}: header names lower-cased
        bytes; the body de-chunked (whole chunks only) when chunked; whether
        the body has ended (always True when not chunked).
    """
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") != b"chunked":
        return status, headers, rest, True
    body, ended = b"", False
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        size = int(size, 16)
        if size == 0:
            ended = True
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    return status, headers, body, ended


def temporaryDirectory(testCase) -> FilePath:
    """A fresh directory removed after the test (also under pytest, which does not chdir)."""
    path = tempfile.mkdtemp(prefix="rocketd-test-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return FilePath(path)


class DomainRecorder:
    """
    The two engine operations a vhost registry uses (C{createDomain},
    C{deleteDomain}), recorded in C{domains}.
    """

    def __init__(self):
        self.domains = set()

    def createDomain(self, name, title=""):
        from twisted.internet.defer import succeed

        self.domains.add(name)
        return succeed(name)

    def deleteDomain(self, name):
        from twisted.internet.defer import succeed

        self.domains.discard(name)
        return succeed(None)


#: The token of the vhost /moon that L{webrocketSetUp} declares.
MOON = "0123456789abcdef0123456789abcdef01234567"


def webrocketSetUp(testCase, declared=None, tokenTTL=3600.0, heartbeat=15.0, eventBacklog=1000,
                   eventBacklogAge=300.0) -> None:
    """
    Give a test case the WebRocket face's parts on a Clock, built and wired
    as L{rocketd.app} does: C{clock}, C{engine}, C{vhosts} (with C{declared},
    by default C{/moon} with token L{MOON}), C{moon}, C{channels},
    C{workers}, C{tokens} and the C{backend} API over them.
    """
    from twisted.internet.task import Clock

    from rocketd.engine.memory import MemoryEngine
    from rocketd.http.sse import Heartbeat
    from rocketd.webrocket.backend import BackendApp
    from rocketd.webrocket.channels import Channels
    from rocketd.webrocket.tokens import TokenStore
    from rocketd.webrocket.vhosts import VhostRegistry
    from rocketd.webrocket.workers import WorkerPool

    testCase.clock = Clock()
    testCase.engine = MemoryEngine(testCase.clock)
    testCase.vhosts = VhostRegistry(
        testCase.engine,
        temporaryDirectory(testCase).child("vhosts.json"),
        testCase.clock,
        declared={"/moon": MOON} if declared is None else declared,
    )
    testCase.successResultOf(testCase.vhosts.load())
    testCase.moon = testCase.vhosts.get("/moon")
    testCase.channels = Channels(testCase.engine, testCase.vhosts)
    testCase.workers = WorkerPool(
        testCase.engine, testCase.vhosts, testCase.clock, backlog=eventBacklog, backlogAge=eventBacklogAge
    )
    testCase.tokens = TokenStore(testCase.clock, tokenTTL)
    testCase.vhosts.addObserver(testCase.tokens.vhostChanged)
    if not isinstance(heartbeat, Heartbeat):
        heartbeat = Heartbeat(testCase.clock, heartbeat)
    testCase.backend = BackendApp(
        testCase.vhosts, testCase.channels, testCase.tokens, testCase.workers, testCase.clock, heartbeat=heartbeat
    )


def webrocketFrontend(testCase, **settings):
    """
    A WebSocket frontend on the parts L{webrocketSetUp} gave C{testCase},
    wired to them as L{rocketd.app} wires it.

    @param settings: passed to L{rocketd.webrocket.frontend.Frontend}.
    """
    from rocketd.webrocket.frontend import Frontend

    frontend = Frontend(
        testCase.vhosts, testCase.channels, testCase.tokens, testCase.workers, testCase.clock, **settings
    )
    testCase.channels.addClosedObserver(frontend.channelClosed)
    testCase.channels.addSubscriberCounter(frontend.browsersOn)
    return frontend


class RecordingReactor:
    """What a tcp.Connection asks of its reactor, recorded."""

    def __init__(self):
        self.writers = set()
        self.added = 0

    def addWriter(self, writer):
        self.added += 1
        self.writers.add(writer)

    def removeWriter(self, writer):
        self.writers.discard(writer)

    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass


def loopbackTCPPair():
    """
    @return: two connected TCP sockets on 127.0.0.1 (ours non-blocking,
        the peer's with a 5 s timeout), closed when the test ends.
    """
    import socket

    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = socket.create_connection(listener.getsockname(), timeout=5)
        ours, _ = listener.accept()
    finally:
        listener.close()
    ours.setblocking(False)
    return ours, peer


class LoopbackConnection(tcp.Connection):
    """A twisted TCP connection over a socket of L{loopbackTCPPair}, on a L{RecordingReactor}."""

    def __init__(self, sock, protocol):
        tcp.Connection.__init__(self, sock, protocol, RecordingReactor())
        self.connected = True  # what a Server's or Client's set-up does

    def getPeer(self):
        return IPv4Address("TCP", *self.socket.getpeername())

    def getHost(self):
        return IPv4Address("TCP", *self.socket.getsockname())


def serverFrames(data: bytes):
    """@return: C{[(opcode, payload)]} of the unmasked WebSocket frames in C{data}."""
    frames = []
    while data:
        opcode, n, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            (n,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif n == 127:
            (n,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append((opcode, data[offset : offset + n]))
        data = data[offset + n :]
    return frames


def exchange(site, data: bytes, hostAddress=None, peerAddress=None) -> bytes:
    """
    Feed raw request bytes to a new connection of C{site} over a
    L{StringTransport} (listening on 127.0.0.1:8080, the client on
    127.0.0.1:40000 unless told); close it.

    @return: the raw bytes the site wrote.
    """
    from twisted.internet.testing import StringTransport

    hostAddress = hostAddress or IPv4Address("TCP", "127.0.0.1", 8080)
    peerAddress = peerAddress or IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peerAddress)
    transport = StringTransport(hostAddress=hostAddress, peerAddress=peerAddress)
    channel.makeConnection(transport)
    channel.dataReceived(data)
    channel.connectionLost(None)
    return transport.value()


#: Host header values that are no host: werkzeug's IDNA encoding refuses the
#: first three; the others are not names at all.
BAD_HOSTS = (b"a..b", b"a" * 64, b"x" * 64 + b".example:80", b"\xc3\xa9..", b"[zz]", b"a:99999", b'evil"<x>', b"")
