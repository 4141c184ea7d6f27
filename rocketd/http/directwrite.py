"""
Writing to a TCP transport without waiting for the next reactor turn.

Twisted's C{transport.write} only buffers: it registers the socket for
write readiness (an C{epoll_ctl}), the reactor calls back when it is
writable, the data is sent, and the socket is unregistered (another
C{epoll_ctl}). For a fan-out that writes to many connections once per
turn, that machinery costs more than the C{send()} itself (see
benchmarks/PROFILE.md). L{directWriter} sends at once when the
transport has nothing buffered, and hands Twisted only what the socket
did not take (or everything, on any error: Twisted's own write path then
deals with it). The transport's state, its producer and its buffer
accounting stay Twisted's.

Both functions read and write private attributes of Twisted's
C{FileDescriptor} (C{_tempDataBuffer}, C{_tempDataLen},
C{_writeDisconnected}). L{BUFFER_PRIVATES} says, once at import, whether
this Twisted keeps its write buffer in them as expected
(L{buffersAsExpected}); if not, L{directWriter} returns
C{transport.write} and L{sendBuffered} does nothing: the bytes then
leave at the reactor's next writable event, as for any transport.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import abstract, tcp


class _NoReactor:
    """A reactor that registers nothing, for L{buffersAsExpected}'s probe."""

    def addWriter(self, writer):
        pass

    def removeWriter(self, writer):
        pass


def buffersAsExpected(descriptorClass=abstract.FileDescriptor) -> bool:
    """
    Check that a Twisted file descriptor buffers a write as this module
    expects: the bytes appended to C{_tempDataBuffer}, counted in
    C{_tempDataLen}, with C{_writeDisconnected} false.

    @param descriptorClass: the class to check (Twisted's by default).
    @return: whether it does.
    """
    try:
        probe = descriptorClass(reactor=_NoReactor())
        probe.connected = True
        probe.write(b"probe")
        return (
            probe._tempDataBuffer == [b"probe"]
            and probe._tempDataLen == 5
            and probe._writeDisconnected is False
            and probe.dataBuffer == b""
        )
    except Exception:
        return False


#: Whether this Twisted buffers writes as L{buffersAsExpected} checks (so
#: whether writes may go to the socket directly); checked once, at import.
BUFFER_PRIVATES = buffersAsExpected()


def directWriter(transport) -> Callable[[bytes], None]:
    """
    @param transport: a connected transport.
    @return: a function that writes bytes to it: straight to the socket
        when C{transport} is a plain TCP connection with nothing waiting
        in its buffer, through C{transport.write} otherwise (and always
        when not L{BUFFER_PRIVATES}).
    """
    if not BUFFER_PRIVATES or not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
        return transport.write
    sock = transport.socket
    fallback = transport.write

    def write(data: bytes) -> None:
        if (
            transport._tempDataLen
            or transport.dataBuffer
            or transport.disconnecting
            or transport._writeDisconnected
            or not transport.connected
        ):
            fallback(data)
            return
        try:
            sent = sock.send(data)
        except OSError:
            # Would block, or the connection broke: Twisted's path knows.
            fallback(data)
            return
        if sent < len(data):
            fallback(data[sent:])

    return write


def sendBuffered(transport) -> None:
    """
    Send what C{transport} holds now, rather than when the reactor next
    finds the socket writable: a finished response leaves at once, before
    the end-of-turn fan-out writes (a publisher waiting for its answer
    gets it first). Only a plain TCP connection with its whole buffer
    unsent, no producer paused and no close pending is touched; anything
    else, a short send or an error leaves the rest to Twisted.
    """
    if not BUFFER_PRIVATES or not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
        return
    if (
        not transport._tempDataLen
        or transport.dataBuffer
        or transport.disconnecting
        or transport._writeDisconnected
        or transport.producerPaused
        or not transport.connected
    ):
        return
    pending = transport._tempDataBuffer
    data = pending[0] if len(pending) == 1 else b"".join(pending)
    try:
        sent = transport.socket.send(data)
    except OSError:
        return
    if sent == len(data):
        transport._tempDataBuffer = []
        transport._tempDataLen = 0
        transport.stopWriting()
    else:
        transport._tempDataBuffer = [data[sent:]]
        transport._tempDataLen = len(data) - sent
