"""
The channel fan-out of this process: what a channel's feed hands out goes
to every browser subscribed to it here, one write per subscriber per
reactor turn.

There is one engine listener per channel feed (L{IFeed.listen}), however
many browsers of this process subscribe to it; a browser is added once the
listener's Deferred has fired, when the engine hands it every message
published after. Each message's WebSocket frame is built once per process
(L{channelFrame}, cached on the message: the engine hands every listener
of the process the same object); the frames
of the messages handed during one reactor turn are joined into one bytes
object at the end of the turn (the injected
L{rocketd.http.coalesce.Coalescer} says when), and that same object is
written to every subscriber. A burst of publishes thus costs each
subscriber one trip through the outbox and the transport, not one per
message. Subscribers that take no broadcasts (hidden ones) get the join
of the other frames, built once for all of them.

A subscriber (a I{sink}) provides L{ISink}.
"""

from __future__ import annotations

from typing import Dict, List

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from rocketd.http.coalesce import Coalescer
from rocketd.webrocket._wire import channelFrame, notBroadcast


class ISink(Interface):
    """A channel's subscriber as the fan-out sees it."""

    hidden = Attribute("True if it takes no broadcasts.")

    def write(data):
        """Take the frames of one turn, joined (bytes)."""

    def feedGone():
        """The channel's feed was deleted (called once, after the last write)."""


class _Channel:
    """One feed's sinks, its listener's handle, and the frames of this turn."""

    __slots__ = ("feed", "sinks", "handle", "frames", "broadcasts", "waiting")

    def __init__(self, feed):
        self.feed = feed
        #: sink -> the index of the first pending frame it takes.
        self.sinks: Dict[object, int] = {}
        self.handle = None
        self.frames: List[bytes] = []
        #: The indexes of the broadcast frames among C{frames}.
        self.broadcasts: List[int] = []
        #: (sink, Deferred) of the sinks added before the engine listened.
        self.waiting: List[tuple] = []


class ChannelFans:
    """
    The fan-outs of this process, one per channel feed.

    @param coalescer: the L{Coalescer} of the clock: the end-of-turn writes
        (one per turn for every channel, and for whatever else shares it).

    @ivar stats: C{turns} (fan-outs written), C{writes} (sink writes),
        C{frames} (frames handed out by the listeners).
    """

    log = Logger()

    def __init__(self, coalescer: Coalescer):
        self._coalescer = coalescer
        self._channels: Dict[object, _Channel] = {}
        # Bound once: the coalescer calls it with a channel at the end of a turn.
        self._flush = self._write
        self.stats = {"turns": 0, "writes": 0, "frames": 0}

    def add(self, feed, sink) -> Deferred:
        """
        Give C{sink} what C{feed} hands out from now on.

        @return: Deferred firing with None once the feed's listener is in
            place (from then on the sink gets every message published);
            fails as L{IFeed.listen} does (and then C{sink} is not added).
        """
        channel = self._channels.get(feed)
        if channel is not None and channel.handle is not None:
            channel.sinks[sink] = len(channel.frames)
            return succeed(None)
        d = Deferred()
        if channel is None:
            channel = self._channels[feed] = _Channel(feed)
            channel.waiting.append((sink, d))
            listening = feed.listen(lambda message: self._arrived(channel, message))
            listening.addCallbacks(self._listening, self._notListening, (channel,), None, (channel,))
        else:
            channel.waiting.append((sink, d))
        return d

    def remove(self, feed, sink) -> None:
        """Give C{sink} nothing more of C{feed}, not even what waits; the last sink stops the listener."""
        channel = self._channels.get(feed)
        if channel is None:
            return
        if channel.handle is None:
            # Not listening yet: the sink's add() fires, and it is not added.
            for waiting in [w for w in channel.waiting if w[0] is sink]:
                channel.waiting.remove(waiting)
                waiting[1].callback(None)
            return
        if channel.sinks.pop(sink, None) is None:
            return
        if not channel.sinks:
            self._forget(channel)
            if channel.handle is not None:
                channel.handle.stop()

    def flush(self, feed) -> None:
        """Write now what waits for C{feed}'s sinks."""
        channel = self._channels.get(feed)
        if channel is not None:
            self._coalescer.flushNow(channel)

    def sinks(self, feed) -> int:
        """@return: how many sinks C{feed} has here."""
        channel = self._channels.get(feed)
        return 0 if channel is None else len(channel.sinks)

    # -- the listener's side ---------------------------------------------

    def _listening(self, handle, channel):
        channel.handle = handle
        waiting, channel.waiting = channel.waiting, []
        if not waiting:
            # Every sink left while the engine set up the listener.
            self._forget(channel)
            handle.stop()
            return
        handle.ended.addCallback(self._ended, channel)
        for sink, d in waiting:
            channel.sinks[sink] = len(channel.frames)
            d.callback(None)

    def _notListening(self, failure, channel):
        self._forget(channel)
        waiting, channel.waiting = channel.waiting, []
        for _, d in waiting:
            d.errback(failure)

    def _arrived(self, channel, message) -> None:
        frame = channelFrame(message)
        if frame is None:
            return
        self.stats["frames"] += 1
        frames = channel.frames
        if not frames:
            # The first of this turn (a channel has frames while it is due).
            self._coalescer.due(channel, self._flush)
        if not notBroadcast(message):
            channel.broadcasts.append(len(frames))
        frames.append(frame)

    def _ended(self, deleted: bool, channel) -> None:
        if not deleted:
            return
        self.flush(channel.feed)
        sinks = list(channel.sinks)
        self._forget(channel)
        for sink in sinks:
            sink.feedGone()

    def _forget(self, channel) -> None:
        if self._channels.get(channel.feed) is channel:
            del self._channels[channel.feed]

    # -- the end of a turn ---------------------------------------------------

    def _write(self, channel) -> None:
        frames, broadcasts = channel.frames, channel.broadcasts
        channel.frames, channel.broadcasts = [], []
        sinks = channel.sinks
        if not frames or not sinks:
            return
        self.stats["turns"] += 1
        everything = frames[0] if len(frames) == 1 else b"".join(frames)
        quiet = None  # the frames but broadcasts, built for the first hidden sink
        writes = 0
        # A sink may leave (or close others) while it writes: a snapshot,
        # and a check that each is still there.
        for sink, since in list(sinks.items()):
            if sink not in sinks:
                continue
            if since:
                # Added during the turn: what came after it, only.
                sinks[sink] = 0
                data = _without(frames, broadcasts if sink.hidden else (), since)
            elif broadcasts and sink.hidden:
                if quiet is None:
                    quiet = _without(frames, broadcasts, 0)
                data = quiet
            else:
                data = everything
            if data:
                writes += 1
                sink.write(data)
        self.stats["writes"] += writes


def _without(frames: List[bytes], skipped, since: int) -> bytes:
    """@return: C{frames[since:]} joined, leaving out the indexes in C{skipped}."""
    skipped = set(skipped)
    return b"".join(frame for i, frame in enumerate(frames) if i >= since and i not in skipped)
