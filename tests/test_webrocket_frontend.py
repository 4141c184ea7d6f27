"""
Tests for the WebRocket frontend's protocol core (L{rocketd.webrocket._session}
driven through L{rocketd.webrocket.frontend.Frontend}), with the embedded
engine, the real backend app and a link that records frames; no WebSocket
library, no network, time on a L{Clock}.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import TestCase

from rocketd.engine.message import Content, Message
from rocketd.webrocket._presence import Member, Presence
from rocketd.webrocket._session import MAX_PENDING, Subscription, channelKind
from rocketd.webrocket._wire import channelFrame, errorFrame, parseClientFrame, FrontendError, textFrame
from tests.support import serverFrames, webrocketFrontend, webrocketSetUp



def payloadsOf(data: bytes) -> list:
    """The payloads of the unmasked server text frames written as C{data}."""
    frames = serverFrames(data)
    assert all(opcode == 0x1 for opcode, _ in frames), frames
    return [payload for _, payload in frames]


def payloadOf(frame: bytes) -> bytes:
    """The payload of one unmasked server text frame."""
    [payload] = payloadsOf(frame)
    return payload


class FakeLink:
    """
    The connection a session writes to: records writes and close requests.
    What channels hand out is written at the end of a reactor turn: a take
    ends the turn first (C{clock.advance(0)}).
    """

    def __init__(self, clock):
        self.clock = clock
        self.frames = []
        self.closedWith = None

    def send(self, frame):
        self.frames.append(frame)

    def close(self, code, reason):
        self.closedWith = (code, reason)

    def take(self):
        """@return: the messages written since the last take, as JSON documents."""
        self.clock.advance(0)
        frames, self.frames = self.frames, []
        return [json.loads(p) for f in frames for p in payloadsOf(f)]


class FakeSink:
    """A worker's event stream that records frames."""

    open = True
    paused = False

    def __init__(self):
        self.frames = []

    def send(self, frame):
        self.frames.append(frame)
        return True

    def whenWritable(self):
        return succeed(True)

    def close(self):
        self.open = False


class FrontendTestCase(TestCase):
    def setUp(self):
        webrocketSetUp(self)
        self.frontend = webrocketFrontend(self)

    def connect(self):
        link = FakeLink(self.clock)
        session = self.frontend.connect(self.moon, link)
        self.assertEqual(link.take(), [{":connected": {"sid": session.sid}}])
        return session, link

    def send(self, session, document):
        session.received(json.dumps(document).encode("utf-8"), False)

    def open(self, name):
        self.successResultOf(self.channels.openChannel(self.moon, name))

    def token(self, uid, channels=".*"):
        return self.backend.issueToken(self.moon, uid, channels)

    def authenticated(self, uid, channels=".*"):
        session, link = self.connect()
        self.send(session, {"auth": {"token": self.token(uid, channels)}})
        self.assertEqual(link.take(), [{":authenticated": {}}])
        return session, link

    def subscribed(self, name, data=None, hidden=False, uid=None):
        session, link = self.authenticated(uid) if uid else self.connect()
        body = {"channel": name, "hidden": hidden}
        if data is not None:
            body["data"] = data
        self.send(session, {"subscribe": body})
        return session, link

    def errorCode(self, link):
        messages = link.take()
        self.assertEqual(len(messages), 1, messages)
        return messages[0][":error"]["code"]

    def pipes(self):
        domain = self.successResultOf(self.engine.getDomain(self.moon.domain))
        return self.successResultOf(domain.listPipes())

    def sinks(self, *names):
        """@return: how many subscriptions of this process the channels' fan-outs feed."""
        domain = self.successResultOf(self.engine.getDomain(self.moon.domain))
        return sum(self.frontend.fans.sinks(self.successResultOf(domain.getFeed(n))) for n in names)

    def subscriberCount(self, name):
        return self.successResultOf(self.channels.getChannel(self.moon, name))["subscribers"]


class ConnectTests(FrontendTestCase):
    def test_connectedWithUUID4(self):
        first, _ = self.connect()
        second, _ = self.connect()
        self.assertEqual(len(first.sid), 36)
        self.assertEqual(first.sid[14], "4")
        self.assertNotEqual(first.sid, second.sid)
        self.assertEqual(self.frontend.connections, 2)

    def test_lostForgetsTheSession(self):
        session, _ = self.connect()
        self.successResultOf(session.lost())
        self.assertEqual(self.frontend.connections, 0)

    def test_framesAfterLossAreIgnored(self):
        session, link = self.connect()
        session.lost()
        self.send(session, {"subscribe": {"channel": "x"}})
        self.assertEqual(link.frames, [])

    def test_close(self):
        session, link = self.connect()
        self.send(session, {"close": {}})
        self.assertEqual(link.closedWith[0], 1000)


class ParseTests(TestCase):
    def test_knownEvents(self):
        self.assertEqual(parseClientFrame(b'{"auth": {"token": "t"}}', False), ("auth", {"token": "t"}))

    def test_badFrames(self):
        for payload in (b"x", b"[]", b"{}", b'{"auth": 1}', b'{"a": {}, "b": {}}', b'{"publish": {}}',
                        b'{"auth": {"t": NaN}}', b"[" * 100000):
            with self.assertRaises(FrontendError) as e:
                parseClientFrame(payload, False)
            self.assertEqual(e.exception.code, 400)
        with self.assertRaises(FrontendError):
            parseClientFrame(b'{"close": {}}', True)

    def test_errorFrame(self):
        self.assertEqual(json.loads(payloadOf(errorFrame(453))), {":error": {"code": 453, "status": "Not subscribed"}})

    def test_channelKinds(self):
        self.assertEqual(channelKind("presence-x"), "presence")
        self.assertEqual(channelKind("private-x"), "private")
        self.assertEqual(channelKind("privatex"), "public")

    def test_textFrameLengths(self):
        """Frames carry payloads of every size (7-bit, 16-bit and 64-bit lengths)."""
        for size in (0, 125, 126, 65535, 65536):
            self.assertEqual(payloadOf(textFrame(b"a" * size)), b"a" * size)


class AuthTests(FrontendTestCase):
    def test_tokensAreSingleUse(self):
        token = self.token("joe")
        session, link = self.connect()
        self.send(session, {"auth": {"token": token}})
        self.assertEqual(link.take(), [{":authenticated": {}}])
        self.assertEqual(session.uid, "joe")
        other, otherLink = self.connect()
        self.send(other, {"auth": {"token": token}})
        self.assertEqual(self.errorCode(otherLink), 402)
        self.assertIsNone(other.uid)

    def test_malformed(self):
        session, link = self.connect()
        for body in ({}, {"token": ""}, {"token": ["x"]}):
            self.send(session, {"auth": body})
            self.assertEqual(self.errorCode(link), 400)

    def test_tokenOfAnotherVhost(self):
        self.successResultOf(self.vhosts.add("/mars"))
        token = self.backend.issueToken("/mars", "joe", ".*")
        session, link = self.connect()
        self.send(session, {"auth": {"token": token}})
        self.assertEqual(self.errorCode(link), 402)

    def test_reauthDropsSubscriptions(self):
        self.open("private-a")
        session, link = self.subscribed("private-a", uid="joe")
        link.take()
        self.assertEqual(self.subscriberCount("private-a"), 1)
        self.send(session, {"auth": {"token": self.token("ann")}})
        self.assertEqual(link.take(), [{":authenticated": {}}])
        self.assertEqual(session.uid, "ann")
        self.assertEqual(session.subscriptions, {})
        self.assertEqual(self.subscriberCount("private-a"), 0)


class SubscribeTests(FrontendTestCase):
    def test_subscribeAndReceive(self):
        self.open("news")
        session, link = self.subscribed("news")
        self.assertEqual(link.take(), [{":subscribed": {"channel": "news"}}])
        self.assertEqual(self.subscriberCount("news"), 1)
        self.successResultOf(self.channels.fire(self.moon, "news", "hello", {"a": 1}))
        self.assertEqual(link.take(), [{"hello": {"a": 1, "channel": "news"}}])

    def test_sameFrameBytesForEverySubscriber(self):
        """A fired event is encoded once: every subscriber is handed the same bytes object."""
        self.open("news")
        links = [self.subscribed("news")[1] for _ in range(3)]
        for link in links:
            link.take()
        self.successResultOf(self.channels.fire(self.moon, "news", "hello", {}))
        self.clock.advance(0)
        frames = [link.frames for link in links]
        self.assertEqual([len(f) for f in frames], [1, 1, 1])
        self.assertIs(frames[0][0], frames[1][0])
        self.assertIs(frames[0][0], frames[2][0])

    def test_oneWritePerTurn(self):
        """
        The events fired during one reactor turn reach each subscriber as
        one write, the same bytes object for all, at the end of the turn.
        """
        self.open("news")
        links = [self.subscribed("news")[1] for _ in range(3)]
        for link in links:
            link.take()
        for i in range(4):
            self.successResultOf(self.channels.fire(self.moon, "news", f"e{i}", {}))
        self.assertEqual([link.frames for link in links], [[], [], []])
        self.clock.advance(0)
        self.assertEqual([len(link.frames) for link in links], [1, 1, 1])
        self.assertIs(links[0].frames[0], links[1].frames[0])
        self.assertIs(links[0].frames[0], links[2].frames[0])
        self.assertEqual(links[0].take(), [{f"e{i}": {"channel": "news"}} for i in range(4)])
        self.assertEqual(self.frontend.fans.stats["turns"], 1)

    def test_subscribeTwiceIsANoOp(self):
        self.open("news")
        session, link = self.subscribed("news")
        self.send(session, {"subscribe": {"channel": "news"}})
        self.assertEqual(link.take(), [{":subscribed": {"channel": "news"}}] * 2)
        self.assertEqual(self.subscriberCount("news"), 1)
        self.assertEqual(self.sinks("news"), 1)
        self.assertEqual(self.pipes(), [])

    def test_errors(self):
        self.open("news")
        self.open("private-x")
        self.open("presence-x")
        session, link = self.connect()
        for body in ({}, {"channel": ""}, {"channel": 1}, {"channel": "news", "data": "d"},
                     {"channel": "news", "hidden": 1}):
            self.send(session, {"subscribe": body})
            self.assertEqual(self.errorCode(link), 400, body)
        for name in ("nope", "bad name", "default", "amq.x"):
            self.send(session, {"subscribe": {"channel": name}})
            self.assertEqual(self.errorCode(link), 454, name)
        for name in ("private-x", "presence-x"):
            self.send(session, {"subscribe": {"channel": name}})
            self.assertEqual(self.errorCode(link), 403, name)
        self.assertEqual(self.sinks("news", "private-x", "presence-x"), 0)

    def test_patternDecides(self):
        self.open("private-a")
        self.open("private-b")
        session, link = self.authenticated("joe", "private-a")
        self.send(session, {"subscribe": {"channel": "private-b"}})
        self.assertEqual(self.errorCode(link), 403)
        self.send(session, {"subscribe": {"channel": "private-a"}})
        self.assertEqual(link.take(), [{":subscribed": {"channel": "private-a", "uid": "joe"}}])

    def test_unsubscribe(self):
        self.open("news")
        session, link = self.subscribed("news")
        link.take()
        self.send(session, {"unsubscribe": {"channel": "news"}})
        self.assertEqual(link.take(), [{":unsubscribed": {"channel": "news"}}])
        self.assertEqual(self.sinks("news"), 0)
        self.successResultOf(self.channels.fire(self.moon, "news", "hello", {}))
        self.assertEqual(link.take(), [])

    def test_unsubscribeErrors(self):
        self.open("news")
        session, link = self.connect()
        self.send(session, {"unsubscribe": {"channel": ""}})
        self.assertEqual(self.errorCode(link), 400)
        self.send(session, {"unsubscribe": {"channel": "nope"}})
        self.assertEqual(self.errorCode(link), 454)
        self.send(session, {"unsubscribe": {"channel": "news"}})
        self.assertEqual(self.errorCode(link), 453)

    def test_lostDropsSubscriptions(self):
        self.open("news")
        self.open("sport")
        session, link = self.subscribed("news")
        self.send(session, {"subscribe": {"channel": "sport"}})
        self.assertEqual(self.sinks("news", "sport"), 2)
        self.successResultOf(session.lost())
        self.assertEqual(self.sinks("news", "sport"), 0)
        self.assertEqual(self.frontend.subscribers("/moon", "news"), [])

    def test_nonFrontendMessagesAreNotSent(self):
        """What a RestMS client publishes to a channel's feed reaches browsers only if it is a frontend event."""
        self.open("news")
        session, link = self.subscribed("news")
        link.take()
        domain = self.successResultOf(self.engine.getDomain("moon"))
        feed = self.successResultOf(domain.getFeed("news"))
        self.successResultOf(feed.publish([
            Message(address="x", contents=(Content("text/plain", b"hello"),)),
            Message(address="x", contents=(Content("application/json", b'{"a": 1, "b": 2}'),)),
            Message(address="x", contents=(Content("application/json", b'{"ok": {"n": 1}}'),)),
        ]))
        self.assertEqual(link.take(), [{"ok": {"n": 1}}])
        self.assertEqual(self.frontend.fans.stats["frames"], 1)

    def test_channelFrameIsCached(self):
        message = Message(address="x", contents=(Content("application/json; charset=utf-8", b'{"e": {}}'),))
        frame = channelFrame(message)
        self.assertIs(channelFrame(message), frame)
        self.assertEqual(payloadOf(frame), b'{"e": {}}')


    def test_channelFrameOfEachMessage(self):
        """Messages asked for in turn each get their own frame (or None)."""
        one = Message(address="x", contents=(Content("application/json", b'{"one": {}}'),))
        two = Message(address="x", contents=(Content("application/json", b'{"two": {}}'),))
        plain = Message(address="x", contents=(Content("text/plain", b"hi"),))
        for _ in range(2):
            self.assertEqual(payloadOf(channelFrame(one)), b'{"one": {}}')
            self.assertIsNone(channelFrame(plain))
            self.assertEqual(payloadOf(channelFrame(two)), b'{"two": {}}')
            self.assertEqual(payloadOf(channelFrame(two)), b'{"two": {}}')
            self.assertIsNone(channelFrame(plain))

class OrderingTests(FrontendTestCase):
    def test_framesAreHandledInOrder(self):
        """A frame waits for the one before it, however long the engine takes."""
        self.open("news")
        slow = Deferred()
        channelFeed = self.frontend.channelFeed
        self.patch(self.frontend, "channelFeed", lambda v, name: slow.addCallback(lambda _: channelFeed(v, name)))
        session, link = self.connect()
        self.send(session, {"subscribe": {"channel": "news"}})
        self.send(session, {"broadcast": {"channel": "news", "event": "e"}})
        self.assertEqual(link.take(), [])
        slow.callback(None)
        self.assertEqual(
            link.take(),
            [{":subscribed": {"channel": "news"}}, {"e": {"sid": session.sid, "channel": "news"}}],
        )

    def test_subscribedComesFirst(self):
        """
        An event that reaches the new pipe before the subscription is
        answered (an engine with latency) is delivered after C{:subscribed}.
        """
        self.open("news")
        attach = Subscription.attach

        def attachThenFire(subscription, engine, feed):
            d = attach(subscription, engine, feed)
            d.addCallback(lambda _: self.channels.fire(self.moon, "news", "early", {}))
            d.addCallback(lambda _: None)
            return d

        self.patch(Subscription, "attach", attachThenFire)
        session, link = self.subscribed("news")
        self.assertEqual(link.take(), [{":subscribed": {"channel": "news"}}, {"early": {"channel": "news"}}])

    def test_lostWhileSubscribing(self):
        """A connection lost while its subscription is made leaves no pipe behind."""
        self.open("news")
        slow = Deferred()
        channelFeed = self.frontend.channelFeed
        self.patch(self.frontend, "channelFeed", lambda v, name: slow.addCallback(lambda _: channelFeed(v, name)))
        session, link = self.connect()
        self.send(session, {"subscribe": {"channel": "news"}})
        cleaned = session.lost()
        self.assertNoResult(cleaned)
        slow.callback(None)
        self.successResultOf(cleaned)
        self.assertEqual(self.pipes(), [])
        self.assertEqual(link.frames, [])

    def test_tooManyWaiting(self):
        """A client that piles up requests faster than the engine answers is closed with 1008."""
        self.patch(self.frontend, "channelFeed", lambda vhost, name: Deferred())
        session, link = self.connect()
        for _ in range(MAX_PENDING + 1):
            self.send(session, {"subscribe": {"channel": "news"}})
        self.assertIsNone(link.closedWith)
        self.send(session, {"subscribe": {"channel": "news"}})
        self.assertEqual(link.closedWith[0], 1008)

    def test_internalError(self):
        """An unexpected failure is answered with 597, and the next frame is handled."""
        self.patch(self.frontend, "channelFeed", lambda vhost, name: 1 / 0)
        session, link = self.connect()
        self.send(session, {"subscribe": {"channel": "news"}})
        self.assertEqual(self.errorCode(link), 597)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.send(session, {"unsubscribe": {}})
        self.assertEqual(self.errorCode(link), 400)


class BroadcastTests(FrontendTestCase):
    def test_broadcastToEveryoneButHidden(self):
        self.open("news")
        sender, senderLink = self.subscribed("news")
        _, otherLink = self.subscribed("news")
        _, hiddenLink = self.subscribed("news", hidden=True)
        for link in (senderLink, otherLink, hiddenLink):
            link.take()
        self.send(sender, {"broadcast": {"channel": "news", "event": "say", "data": {"t": "hi", "sid": "forged"}}})
        expected = [{"say": {"t": "hi", "sid": sender.sid, "channel": "news"}}]
        self.assertEqual(senderLink.take(), expected)
        self.assertEqual(otherLink.take(), expected)
        self.assertEqual(hiddenLink.take(), [])
        self.successResultOf(self.channels.fire(self.moon, "news", "fired", {}))
        self.assertEqual(hiddenLink.take(), [{"fired": {"channel": "news"}}])

    def test_errors(self):
        self.open("news")
        session, link = self.connect()
        for body in ({"channel": "news"}, {"event": "e"}, {"channel": "news", "event": ":x"},
                     {"channel": "news", "event": "e", "data": 1}, {"channel": "news", "event": "e", "trigger": ""}):
            self.send(session, {"broadcast": body})
            self.assertEqual(self.errorCode(link), 400, body)
        self.send(session, {"broadcast": {"channel": "nope", "event": "e"}})
        self.assertEqual(self.errorCode(link), 454)
        self.send(session, {"broadcast": {"channel": "news", "event": "e"}})
        self.assertEqual(self.errorCode(link), 453)
        self.send(session, {"subscribe": {"channel": "news"}})
        link.take()
        self.send(session, {"broadcast": {"channel": "news", "event": "e", "trigger": "t"}})
        self.assertEqual(self.errorCode(link), 403)

    def test_broadcastWithTrigger(self):
        self.open("news")
        sink = FakeSink()
        self.successResultOf(self.backend.workers.connect(self.moon, ".*", sink))
        session, link = self.subscribed("news", uid="joe")
        link.take()
        self.send(session, {"broadcast": {"channel": "news", "event": "say", "data": {"t": 1}, "trigger": "said"}})
        self.assertEqual(link.take(), [{"say": {"t": 1, "sid": session.sid, "channel": "news"}}])
        self.assertEqual(len(sink.frames), 1)
        self.assertIn(b"event: news/said\n", sink.frames[0])
        self.assertIn(('data: {"t":1,"sid":"%s","uid":"joe"}' % session.sid).encode(), sink.frames[0])


class TriggerTests(FrontendTestCase):
    def test_trigger(self):
        sink = FakeSink()
        self.successResultOf(self.backend.workers.connect(self.moon, ".*", sink))
        session, link = self.authenticated("joe")
        self.send(session, {"trigger": {"event": "hit", "channel": "anywhere", "data": {"n": 2}}})
        self.send(session, {"trigger": {"event": "bare"}})
        self.assertEqual(link.take(), [])
        self.assertIn(b"event: anywhere/hit\n", sink.frames[0])
        self.assertIn(b"event: bare\n", sink.frames[1])

    def test_errors(self):
        session, link = self.connect()
        self.send(session, {"trigger": {"event": "e"}})
        self.assertEqual(self.errorCode(link), 403)
        for body in ({}, {"event": ""}, {"event": "e", "data": []}, {"event": "e", "channel": 3}):
            self.send(session, {"trigger": body})
            self.assertEqual(self.errorCode(link), 400, body)
        self.send(session, {"trigger": {"event": "e", "channel": "bad name"}})
        self.assertEqual(self.errorCode(link), 451)


class PresenceTests(FrontendTestCase):
    def test_joinAndLeave(self):
        self.open("presence-room")
        first, firstLink = self.subscribed("presence-room", {"nick": "a"}, uid="ann")
        self.assertEqual(
            firstLink.take(),
            [
                {":subscribed": {"channel": "presence-room", "uid": "ann", "subscribers": []}},
                {":memberJoined": {"nick": "a", "channel": "presence-room", "uid": "ann"}},
            ],
        )
        second, secondLink = self.subscribed("presence-room", {"nick": "b"}, uid="bob")
        self.assertEqual(
            secondLink.take(),
            [
                {
                    ":subscribed": {
                        "channel": "presence-room",
                        "uid": "bob",
                        "subscribers": [{"nick": "a", "uid": "ann"}],
                    }
                },
                {":memberJoined": {"nick": "b", "channel": "presence-room", "uid": "bob"}},
            ],
        )
        self.assertEqual(firstLink.take(), [{":memberJoined": {"nick": "b", "channel": "presence-room", "uid": "bob"}}])
        self.successResultOf(second.lost())
        self.assertEqual(firstLink.take(), [{":memberLeft": {"nick": "b", "channel": "presence-room", "uid": "bob"}}])
        self.assertEqual(self.frontend.presence.visible(("/moon", "presence-room")), [{"nick": "a", "uid": "ann"}])

    def test_unsubscribeWithData(self):
        self.open("presence-room")
        first, firstLink = self.subscribed("presence-room", {"nick": "a"}, uid="ann")
        second, secondLink = self.subscribed("presence-room", {"nick": "b"}, uid="bob")
        firstLink.take()
        secondLink.take()
        self.send(second, {"unsubscribe": {"channel": "presence-room", "data": {"why": "bye"}}})
        self.assertEqual(secondLink.take(), [{":unsubscribed": {"channel": "presence-room"}}])
        self.assertEqual(firstLink.take(), [{":memberLeft": {"why": "bye", "channel": "presence-room", "uid": "bob"}}])

    def test_hiddenMembers(self):
        self.open("presence-room")
        _, firstLink = self.subscribed("presence-room", {"nick": "a"}, uid="ann")
        firstLink.take()
        spy, spyLink = self.subscribed("presence-room", {"nick": "s"}, hidden=True, uid="spy")
        self.assertEqual(
            spyLink.take(),
            [{":subscribed": {"channel": "presence-room", "uid": "spy", "subscribers": [{"nick": "a", "uid": "ann"}]}}],
        )
        self.assertEqual(firstLink.take(), [])
        _, lateLink = self.subscribed("presence-room", {}, uid="late")
        self.assertEqual(lateLink.take()[0][":subscribed"]["subscribers"], [{"nick": "a", "uid": "ann"}])
        self.assertEqual(spyLink.take(), [{":memberJoined": {"channel": "presence-room", "uid": "late"}}])
        firstLink.take()
        self.successResultOf(spy.lost())
        self.assertEqual(firstLink.take(), [])

    def test_presenceRegistry(self):
        presence = Presence()
        key = ("/moon", "presence-x")
        self.assertEqual(presence.add(key, Member("1", "a", {"n": 1})), [])
        self.assertEqual(presence.add(key, Member("2", "b", {}, hidden=True)), [{"n": 1, "uid": "a"}])
        self.assertEqual(presence.add(key, Member("3", "c")), [{"n": 1, "uid": "a"}])
        self.assertEqual(presence.remove(key, "1").uid, "a")
        self.assertIsNone(presence.remove(key, "1"))
        presence.forgetVhost("/moon")
        self.assertEqual(presence.members(key), [])


class ChannelClosedTests(FrontendTestCase):
    def test_subscribersAreToldAndDropped(self):
        self.open("presence-room")
        first, firstLink = self.subscribed("presence-room", {}, uid="ann")
        second, secondLink = self.subscribed("presence-room", {}, uid="bob")
        firstLink.take()
        secondLink.take()
        self.successResultOf(self.channels.closeChannel(self.moon, "presence-room"))
        for session, link in ((first, firstLink), (second, secondLink)):
            self.assertEqual(link.take(), [{":channelClosed": {"channel": "presence-room"}}])
            self.assertEqual(session.subscriptions, {})
        self.assertEqual(self.pipes(), [])
        self.assertEqual(self.frontend.presence.members(("/moon", "presence-room")), [])
        # Their departure is no news to anyone: no memberLeft anywhere.
        self.successResultOf(first.lost())
        self.assertEqual(secondLink.take(), [])

    def test_pendingFramesComeFirst(self):
        """What the channel handed out before it closed reaches the client before :channelClosed."""
        self.open("news")
        session, link = self.subscribed("news")
        link.take()
        self.successResultOf(self.channels.fire(self.moon, "news", "last", {}))
        self.successResultOf(self.channels.closeChannel(self.moon, "news"))
        self.assertEqual(link.take(), [{"last": {"channel": "news"}}, {":channelClosed": {"channel": "news"}}])

    def test_feedDeletedThroughRestMS(self):
        """A channel's feed deleted behind the backend's back: :channelClosed, once."""
        self.open("presence-room")
        session, link = self.subscribed("presence-room", {}, uid="ann")
        link.take()
        domain = self.successResultOf(self.engine.getDomain(self.moon.domain))
        feed = self.successResultOf(domain.getFeed("presence-room"))
        self.successResultOf(feed.delete())
        self.assertEqual(link.take(), [{":channelClosed": {"channel": "presence-room"}}])
        self.assertEqual(session.subscriptions, {})
        self.assertEqual(self.frontend.subscribers("/moon", "presence-room"), [])
        self.assertEqual(self.frontend.presence.members(("/moon", "presence-room")), [])

    def test_vhostDeleted(self):
        self.successResultOf(self.vhosts.add("/mars"))
        mars = self.vhosts.get("/mars")
        link = FakeLink(self.clock)
        self.frontend.connect(mars, link)
        self.successResultOf(self.vhosts.delete("/mars"))
        self.assertEqual(link.closedWith[0], 1001)
