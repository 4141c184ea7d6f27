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
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import tcp


def directWriter(transport) -> Callable[[bytes], None]:
    """
    @param transport: a connected transport.
    @return: a function that writes bytes to it: straight to the socket
        when C{transport} is a plain TCP connection with nothing waiting
        in its buffer, through C{transport.write} otherwise.
    """
    if not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
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
    if not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
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
