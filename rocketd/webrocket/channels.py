"""
WebRocket channels: what a channel is, and the operations on the channels
of a vhost that the backend API, the admin API and the WebSocket frontend
share.

A channel is a public fanout feed of the vhost's engine domain, named
after the channel. Opening one creates the feed; closing one deletes it
(every subscriber's join goes with it); firing an event publishes one
message whose single C{application/json} content is the bytes every
subscriber receives.

Two things a channel's owner can't know are asked of whoever knows them
(the composition root, L{rocketd.app}, wires them): who wants to hear that
a channel closed (L{Channels.addClosedObserver}: the WebSocket frontend
tells its subscribers), and how many subscribers of a channel are not
joins onto its feed (L{Channels.addSubscriberCounter}: the frontend's
browsers, which share one engine listener per channel).
"""

from __future__ import annotations

import re
from typing import Callable, List, Optional

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.logger import Logger

from rocketd.engine.message import Content, Message
from rocketd.errors import EngineError, InvalidArgument, InvalidName, NoSuchResource
from rocketd.interfaces import DEFAULT_FEED
from rocketd.webrocket._wire import WS_FRAME, encodeJSON, textFrame

#: A channel name.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: The longest channel name.
MAX_CHANNEL_NAME = 128


def checkChannelName(name: str) -> None:
    """
    @raise InvalidName: unless C{name} is a valid channel name (which also
        excludes the names the engine reserves: C{default}, C{amq.*}).
    """
    if not isinstance(name, str) or len(name) > MAX_CHANNEL_NAME or not CHANNEL_NAME.fullmatch(name):
        raise InvalidName(
            f"{name!r} is not a valid channel name: it must be 1 to {MAX_CHANNEL_NAME} letters, digits, "
            "'_', '.' or '-', and not start with '.' or '-'."
        )
    if name == DEFAULT_FEED or name.startswith("amq."):
        raise InvalidName(f"The channel name {name!r} is reserved.")


def channelEventMessage(channel: str, event: str, data: Optional[dict]) -> Message:
    """
    The message of an event fired on a channel: address = the event name,
    one C{application/json} content C{{"<event>": {...data, "channel":
    "<channel>"}}}, the bytes every subscriber receives as they are.

    @raise InvalidArgument: empty or reserved event name, data not an object.
    """
    if not isinstance(event, str) or not event:
        raise InvalidArgument("The trigger's 'event' must be a non-empty string.")
    if event.startswith(":"):
        raise InvalidArgument("Event names starting with ':' are reserved for the server.")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument("The trigger's 'data' must be an object.")
    body = encodeJSON({event: {**data, "channel": channel}})
    message = Message(address=event, contents=(Content("application/json", body),))
    # Its WebSocket frame, built here where the body is known to be one
    # event (the frontend would otherwise parse the body again to check).
    message.cache[WS_FRAME] = textFrame(body)
    return message


class Channels:
    """
    The channels of every vhost.

    @param engine: the L{rocketd.interfaces.IEngine}.
    @param vhosts: the L{rocketd.webrocket.vhosts.VhostRegistry}.

    Every operation takes a vhost as a L{rocketd.webrocket.vhosts.Vhost} or
    a vhost path, and fails with L{NoSuchResource} for an unknown one.
    """

    log = Logger()

    def __init__(self, engine, vhosts):
        self.engine = engine
        self.vhosts = vhosts
        self._closedObservers: List[Callable[[object, str], object]] = []
        self._subscriberCounters: List[Callable[[object], int]] = []

    # -- who else must know -----------------------------------------------------

    def addClosedObserver(self, observer: Callable[[object, str], object]) -> None:
        """
        Call C{observer(vhost, name)} after a channel is closed through
        L{closeChannel} (with the L{rocketd.webrocket.vhosts.Vhost}); an
        observer that fails is logged, the others are still called.
        """
        self._closedObservers.append(observer)

    def addSubscriberCounter(self, counter: Callable[[object], int]) -> None:
        """
        Count, in every channel's C{subscribers}, C{counter(feed)}: how many
        subscribers of the channel's feed are not joins onto it.
        """
        self._subscriberCounters.append(counter)

    # -- channels ------------------------------------------------------------

    def feed(self, vhost, name: str) -> Deferred:
        """
        @return: Deferred firing with the channel's fanout feed; fails with
            L{NoSuchResource} if the vhost or the channel does not exist.
        """
        # Plain callbacks (no generator): this runs on every fired event.
        try:
            vhost = self.vhosts.resolve(vhost)
            d = self.engine.getDomain(vhost.domain)
        except Exception:
            return fail()

        def noFeed(failure):
            failure.trap(NoSuchResource)
            return None

        def check(feed):
            if feed is None or feed.type != "fanout" or feed.isDefault:
                raise NoSuchResource(f"There is no channel {name} in {vhost.path}.")
            return feed

        def getFeed(domain):
            try:
                return domain.getFeed(name).addErrback(noFeed)
            except NoSuchResource:
                return None

        d.addCallback(getFeed)
        d.addCallback(check)
        return d

    def _describe(self, feed):
        """A channel's description: its name, its subscribers (joins, and those counted elsewhere)."""
        d = feed.listJoins()
        d.addCallback(
            lambda joins: {
                "name": feed.name,
                "subscribers": len(joins) + sum(count(feed) for count in self._subscriberCounters),
            }
        )
        return d

    def openChannel(self, vhost, name: str) -> Deferred:
        """
        Open a channel (a public fanout feed of that name in the vhost's
        domain); opening one that is open changes nothing.

        @return: Deferred firing with True if the channel was created, False
            if it existed; fails with L{InvalidName}, L{NoSuchResource}
            (unknown vhost) or L{rocketd.errors.Conflict} (a feed of another
            type has that name).
        """
        try:
            vhost = self.vhosts.resolve(vhost)
            checkChannelName(name)
        except EngineError:
            return fail()
        d = self.engine.getDomain(vhost.domain)
        d.addCallback(lambda domain: domain.createFeed(name, "fanout", title=f"WebRocket channel {name}"))
        d.addCallback(lambda result: result[1])
        return d

    def closeChannel(self, vhost, name: str) -> Deferred:
        """
        Close a channel: delete its feed, so every subscriber's join goes,
        then tell the observers (L{addClosedObserver}).

        @return: Deferred firing with None; fails with L{NoSuchResource}
            for an unknown vhost or channel.
        """
        try:
            vhost = self.vhosts.resolve(vhost)
        except EngineError:
            return fail()
        d = self.feed(vhost, name)
        d.addCallback(lambda feed: feed.delete())
        d.addCallback(lambda _: self._closed(vhost, name))
        return d

    def _closed(self, vhost, name):
        for observer in list(self._closedObservers):
            try:
                observer(vhost, name)
            except Exception:
                self.log.failure("channel-closed observer failed for {channel}", channel=name)

    def getChannel(self, vhost, name: str) -> Deferred:
        """
        @return: Deferred firing with C{{"name": str, "subscribers": int}};
            fails with L{NoSuchResource} for an unknown vhost or channel.
        """
        d = self.feed(vhost, name)
        d.addCallback(self._describe)
        return d

    def listChannels(self, vhost) -> Deferred:
        """
        @return: Deferred firing with the vhost's channels, by name, as
            C{{"name": str, "subscribers": int}}; fails with
            L{NoSuchResource} for an unknown vhost.
        """
        try:
            vhost = self.vhosts.resolve(vhost)
        except EngineError:
            return fail()
        d = self.engine.getDomain(vhost.domain)
        d.addCallback(lambda domain: domain.listFeeds())
        d.addCallback(
            lambda feeds: gatherResults(
                [self._describe(f) for f in feeds if f.type == "fanout" and not f.isDefault and f.name],
                consumeErrors=True,
            )
        )
        d.addCallback(lambda channels: sorted(channels, key=lambda c: c["name"]))
        return d

    def fire(self, vhost, channel: str, event: str, data: Optional[dict]) -> Deferred:
        """
        Fire an event on a channel: every subscriber receives
        C{{"<event>": {...data, "channel": "<channel>"}}}.

        @return: Deferred firing with the number of subscribers reached;
            fails with L{InvalidArgument} or L{NoSuchResource}.
        """
        try:
            message = channelEventMessage(channel, event, data)
        except (EngineError, ValueError, TypeError) as e:
            return fail(e if isinstance(e, EngineError) else InvalidArgument(str(e)))
        d = self.feed(vhost, channel)
        d.addCallback(lambda feed: feed.publish([message]))
        return d
