"""
The AMQP client, behind one module: pika's L{TwistedProtocolConnection} on
the reactor (no threads), one connection per engine, reconnected with
jittered exponential backoff.

Nothing else of the project imports pika. While the connection is away,
L{Broker.channel} fails with L{EngineUnavailable} at once, so that the
faces answer 503 instead of hanging.
"""

from __future__ import annotations

import random as _random
from typing import Callable, Optional
from urllib.parse import urlsplit

import pika
from pika.adapters.twisted_connection import TwistedProtocolConnection
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.protocol import ClientCreator
from twisted.logger import Logger

from rocketd.errors import EngineUnavailable

#: The first reconnection delay, and its cap, in seconds.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0

BasicProperties = pika.BasicProperties


def backoff(attempt: int, random: Callable[[], float] = _random.random) -> float:
    """
    @param attempt: how many connection attempts failed in a row (1 for
        the first failure).
    @return: the delay before the next attempt: 0.5 s doubling up to 30 s,
        then spread over +-25% so that nodes restarted together do not
        reconnect together.
    """
    base = min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, attempt - 1))
    return base * (0.75 + 0.5 * random())


def unavailable(sentence: str = "The message broker is unreachable; retry later.") -> Deferred:
    """@return: a Deferred failed with L{EngineUnavailable}."""
    return fail(EngineUnavailable(sentence))


def drain(queue, deliver: Callable, ended: Optional[Callable] = None) -> None:
    """
    Hand every delivery a consumer's queue (pika's
    C{ClosableDeferredQueue}) receives to C{deliver}, in order, as it
    comes, without growing the stack; call C{ended(reason)} once the queue
    is closed (consumer cancelled, channel or connection closed).
    """

    def got(delivery):
        deliver(delivery)
        pull()

    def closed(failure):
        if ended is not None:
            ended(failure.value)

    def pull():
        while queue.pending and not queue.closed:
            deliver(queue.pending.pop(0))
        if not queue.closed:
            queue.get().addCallbacks(got, closed)
        elif ended is not None:
            ended(queue.closed)

    pull()


class Channel:
    """
    A channel that reopens itself when a failed command closed it: the
    publisher's (with confirms) and the declarations'.
    """

    def __init__(self, connection, confirm: bool = False):
        self._connection = connection
        self._confirm = confirm
        self._channel = None
        self._opening: Optional[Deferred] = None

    @inlineCallbacks
    def get(self):
        """@return: Deferred firing with an open channel."""
        while self._channel is None or self._channel.is_closed or self._channel.is_closing:
            if self._connection.is_closed:
                raise EngineUnavailable("The message broker connection was lost; retry later.")
            channel = yield self._connection.channel()
            if self._confirm:
                yield channel.confirm_delivery()
            self._channel = channel
        return self._channel


def parameters(url: str, heartbeat: int):
    """
    @return: pika's connection parameters for an AMQP URI, with the
        heartbeat; a ValueError names what is wrong with the URI.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"{url!r} is not an amqp:// or amqps:// URI")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    return params


def tcpConnect(reactor, url: str, heartbeat: int) -> Deferred:
    """
    Connect to the broker of C{url} and fire with the ready
    L{TwistedProtocolConnection}.
    """
    params = parameters(url, heartbeat)
    creator = ClientCreator(reactor, TwistedProtocolConnection, params)
    if params.ssl_options is not None or urlsplit(url).scheme == "amqps":
        from twisted.internet import ssl

        options = ssl.optionsForClientTLS(params.host)
        d = creator.connectSSL(params.host, params.port, options, timeout=10)
    else:
        d = creator.connectTCP(params.host, params.port, timeout=10)

    def ready(connection):
        return connection.ready.addCallback(lambda _: connection)

    return d.addCallback(ready)


class Broker:
    """
    One engine's connection to the broker.

    @ivar connection: the ready connection, or None while away.
    @ivar attempts: connection attempts failed in a row.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        url: str,
        heartbeat: int = 10,
        onReady: Optional[Callable[[object], object]] = None,
        onLost: Optional[Callable[[], None]] = None,
        connect: Callable = tcpConnect,
        random: Callable[[], float] = _random.random,
    ):
        """
        @param onReady: called with the connection each time it is ready
            (it may return a Deferred: the broker counts as up once it
            fires, e.g. once the metadata is replayed).
        @param onLost: called each time a ready connection is lost.
        @param connect: C{connect(reactor, url, heartbeat)} -> Deferred of
            a ready connection (tests give a fake).
        """
        self._reactor = reactor
        self._url = url
        self._heartbeat = heartbeat
        self._onReady = onReady
        self._onLost = onLost
        self._connect = connect
        self._random = random
        self.connection = None
        self.attempts = 0
        self._up = False
        self._retry = None
        self._stopped = False
        self._firstTry: Optional[Deferred] = None

    @property
    def up(self) -> bool:
        """Whether the connection is ready (and its onReady done)."""
        return self._up

    def start(self) -> Deferred:
        """
        Start connecting; fire once the first attempt has ended (ready or
        not: while away, operations fail with L{EngineUnavailable} and the
        broker keeps trying).
        """
        if self._firstTry is None:
            self._firstTry = Deferred()
            self._attempt()
        return self._firstTry

    def _firstDone(self):
        d, self._firstTry = self._firstTry, succeed(None)
        if d is not None and not d.called:
            d.callback(None)

    @inlineCallbacks
    def _attempt(self):
        self._retry = None
        if self._stopped:
            return
        try:
            connection = yield self._connect(self._reactor, self._url, self._heartbeat)
        except Exception as e:
            self._failed(e)
            return
        if self._stopped:
            connection.close()
            return
        self.connection = connection
        connection.closed.addBoth(self._closed, connection)
        try:
            if self._onReady is not None:
                yield self._onReady(connection)
        except Exception as e:
            self.log.failure("Setting up the broker connection failed")
            self.connection = None
            if not connection.is_closed:
                connection.close()
            self._failed(e)
            return
        self.attempts = 0
        self._up = True
        self.log.info("Connected to the message broker")
        self._firstDone()

    def _failed(self, error):
        self.attempts += 1
        delay = backoff(self.attempts, self._random)
        self.log.warn(
            "The message broker is unreachable ({error}); retrying in {delay:.1f} s", error=error, delay=delay
        )
        self._firstDone()
        if not self._stopped:
            self._retry = self._reactor.callLater(delay, self._attempt)

    def _closed(self, reason, connection):
        if connection is not self.connection:
            return None
        self.connection = None
        wasUp, self._up = self._up, False
        if wasUp and self._onLost is not None:
            try:
                self._onLost()
            except Exception:
                self.log.failure("Handling the lost broker connection failed")
        if not self._stopped:
            self.log.warn("Lost the message broker connection ({reason})", reason=reason)
            self._failed(reason if isinstance(reason, Exception) else Exception(str(reason)))
        return None

    def unavailable(self) -> EngineUnavailable:
        """The error of an operation tried while the broker is away."""
        return EngineUnavailable(retryAfter=max(1, int(backoff(self.attempts + 1, lambda: 0.5) + 0.999)))

    def channel(self) -> Deferred:
        """
        @return: Deferred firing with a new channel, or failing with
            L{EngineUnavailable} while the broker is away.
        """
        if self.connection is None:
            return fail(self.unavailable())
        return self.connection.channel()

    def stop(self) -> Deferred:
        """Stop reconnecting and close the connection."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._up = False
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed:
            closed = connection.closed
            connection.close()
            if closed is not None:
                return closed.addBoth(lambda _: None)
        return succeed(None)
