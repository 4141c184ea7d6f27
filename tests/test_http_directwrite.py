"""
Tests for L{rocketd.http.directwrite}: over a real socket pair (no
network), with a reactor stand-in that records write registrations.
"""

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from rocketd.http.directwrite import directWriter, sendBuffered
from tests.support import RecordingReactor


class DirectWriterTests(TestCase):
    def setUp(self):
        self.ours, self.peer = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(self.peer.close)
        self.ours.setblocking(False)
        self.peer.settimeout(5)
        self.reactor = RecordingReactor()
        self.connection = tcp.Connection(self.ours, Protocol(), self.reactor)
        self.connection.connected = True  # what a Server's or Client's set-up does
        self.write = directWriter(self.connection)

    def received(self, size):
        data = b""
        while len(data) < size:
            chunk = self.peer.recv(size - len(data))
            self.assertTrue(chunk, "the connection closed")
            data += chunk
        return data

    def test_sendsAtOnce(self):
        """With nothing buffered, the bytes go to the socket now, without a write registration."""
        self.write(b"hello")
        self.write(b" world")
        self.assertEqual(self.received(11), b"hello world")
        self.assertEqual(self.reactor.added, 0)
        self.assertFalse(self.connection.dataBuffer or self.connection._tempDataBuffer)

    def test_behindBufferedData(self):
        """While Twisted holds data for the socket, new data queues behind it, in order."""
        self.connection.write(b"first ")
        self.write(b"second")
        self.assertEqual(self.connection._tempDataBuffer, [b"first ", b"second"])
        self.connection.doWrite()
        self.assertEqual(self.received(12), b"first second")

    def test_socketFull(self):
        """What the socket does not take is left to Twisted, and arrives whole and in order."""
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payload = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers
        self.write(payload)
        self.write(b"tail")
        self.assertIn(self.connection, self.reactor.writers)
        expected = payload + b"tail"
        got = bytearray()
        while len(got) < len(expected):
            if self.connection in self.reactor.writers:
                self.connection.doWrite()
            self.peer.settimeout(0.01)
            try:
                got += self.peer.recv(65536)
            except socket.timeout:
                pass
        self.assertEqual(bytes(got), expected)

    def test_otherTransports(self):
        """A transport that is not a plain TCP connection is written through its own write."""
        transport = StringTransport()
        self.assertEqual(directWriter(transport), transport.write)

    def test_afterLoseConnection(self):
        """Once the connection is closing, writes take Twisted's path (which drops or flushes them)."""
        self.connection.disconnecting = True
        self.write(b"late")
        self.assertEqual(self.connection._tempDataBuffer, [b"late"])

    def test_sendBuffered(self):
        """What Twisted holds is sent now, and the socket is no longer watched for writing."""
        self.connection.write(b"head ")
        self.connection.write(b"body")
        self.assertIn(self.connection, self.reactor.writers)
        sendBuffered(self.connection)
        self.assertEqual(self.received(9), b"head body")
        self.assertNotIn(self.connection, self.reactor.writers)
        self.assertEqual((self.connection._tempDataBuffer, self.connection._tempDataLen), ([], 0))

    def test_sendBufferedLeavesTheRest(self):
        """A short send leaves the rest, in order, to Twisted; a closing transport is not touched."""
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payload = bytes(range(256)) * 4096
        self.connection.write(payload)
        sendBuffered(self.connection)
        self.assertTrue(0 < self.connection._tempDataLen < len(payload))
        self.assertIn(self.connection, self.reactor.writers)
        got = bytearray()
        self.peer.settimeout(0.01)
        while len(got) < len(payload):
            if self.connection in self.reactor.writers:
                self.connection.doWrite()
            try:
                got += self.peer.recv(65536)
            except socket.timeout:
                pass
        self.assertEqual(bytes(got), payload)
        self.connection.write(b"late")
        self.connection.disconnecting = True
        sendBuffered(self.connection)
        self.assertEqual(self.connection._tempDataBuffer, [b"late"])


class BufferCheckTests(TestCase):
    """
    The check, once at import, that Twisted buffers writes where the
    direct writes look, and the fallback when it does not.
    """

    def test_twistedBuffersAsExpected(self):
        """This Twisted keeps its write buffer where directwrite looks."""
        from rocketd.http import directwrite

        self.assertTrue(directwrite.BUFFER_PRIVATES)
        self.assertTrue(directwrite.buffersAsExpected())

    def test_anotherBufferIsRefused(self):
        """A descriptor that buffers elsewhere (or whose probe raises) fails the check."""
        from twisted.internet import abstract

        from rocketd.http.directwrite import buffersAsExpected

        class ElsewhereBuffered(abstract.FileDescriptor):
            def write(self, data):
                self.pending = [data]

        class Broken(abstract.FileDescriptor):
            def __init__(self, reactor=None):
                raise TypeError("another signature")

        self.assertFalse(buffersAsExpected(ElsewhereBuffered))
        self.assertFalse(buffersAsExpected(Broken))

    def test_fallback(self):
        """
        Without the expected buffer, writes take Twisted's own path: the
        transport's C{write}, and nothing sent before the reactor's
        writable event.
        """
        from rocketd.http import directwrite

        self.patch(directwrite, "BUFFER_PRIVATES", False)
        ours, peer = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        ours.setblocking(False)
        reactor = RecordingReactor()
        connection = tcp.Connection(ours, Protocol(), reactor)
        connection.connected = True
        self.assertEqual(directWriter(connection), connection.write)
        connection.write(b"answer")
        sendBuffered(connection)
        self.assertEqual(connection._tempDataBuffer, [b"answer"])
        self.assertIn(connection, reactor.writers)
