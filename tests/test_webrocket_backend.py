"""
Tests for L{rocketd.webrocket.backend}: the backend API over real
twisted.web requests (a L{Site} on a L{StringTransport}), mounted as the
main listener mounts it, on the embedded engine and a L{Clock}.
"""

import base64
import json
import re

from twisted.internet.defer import fail
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from rocketd.app import RootResource
from rocketd.errors import InvalidArgument, InvalidName, NoSuchResource
from rocketd.http.sse import COMMENT_OPEN, COMMENT_PING
from rocketd.webrocket.backend import parseTrigger
from rocketd.webrocket.channels import channelEventMessage, checkChannelName
from tests.support import parseResponse, webrocketSetUp

MOON = "0123456789abcdef0123456789abcdef01234567"
CHAT = "fedcba9876543210fedcba9876543210fedcba98"


class Exchange:
    """One HTTP request on its own connection, and its response so far."""

    def __init__(self, site, method, path, auth=None, body=b"", headers=()):
        self.protocol = site.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: example"]
        if auth is not None:
            lines.append(b"Authorization: Basic " + base64.b64encode(auth.encode()))
        lines.append(b"Content-Length: %d" % (len(body),))
        lines.extend(headers)
        self.protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    @property
    def status(self):
        return parseResponse(self.transport.value())[0]

    @property
    def headers(self):
        return parseResponse(self.transport.value())[1]

    @property
    def body(self):
        return parseResponse(self.transport.value())[2]

    @property
    def ended(self):
        return parseResponse(self.transport.value())[3]

    def json(self):
        return json.loads(self.body)

    def disconnect(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))


class BackendTestCase(TestCase):
    def setUp(self):
        webrocketSetUp(self, declared={"/moon": MOON, "/apps/chat": CHAT}, tokenTTL=60.0, heartbeat=15.0,
                       eventBacklog=10, eventBacklogAge=300.0)
        self.app = self.backend
        self.site = Site(RootResource(self.app.resource()), reactor=Clock())

    def request(self, method, path, token=MOON, user="wr", body=b"", headers=()):
        auth = None if token is None else f"{user}:{token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        return Exchange(self.site, method, path, auth=auth, body=body, headers=headers)

    def assertError(self, exchange, status):
        self.assertEqual(exchange.status, status)
        self.assertEqual(exchange.headers[b"content-type"], b"application/json")
        error = exchange.json()["error"]
        self.assertIsInstance(error, str)
        self.assertTrue(error)
        return error

    def subscribe(self, vhostDomain, channel):
        """A RestMS-style follower: a fifo pipe joined to the channel's feed."""
        domain = self.successResultOf(self.engine.getDomain(vhostDomain))
        feed = self.successResultOf(domain.getFeed(channel))
        pipe = self.successResultOf(domain.createPipe("fifo"))
        self.successResultOf(pipe.join(feed))
        return pipe

    def bodies(self, pipe):
        return [h.message.contents[0].body for h in self.successResultOf(pipe.listMessages())]


class AuthenticationTests(BackendTestCase):
    def test_unknownVhostFirst(self):
        """An unknown vhost is 404 whatever the credentials."""
        for token in (None, MOON, "x"):
            self.assertError(self.request(b"GET", b"/venus/channels", token=token), 404)
        self.assertError(self.request(b"GET", b"/", token=None), 404)
        self.assertError(self.request(b"GET", b"/channels", token=None), 404)

    def test_missingOrWrongCredentials(self):
        for token, user in [(None, "wr"), ("0" * 40, "wr"), (MOON, "admin"), (CHAT, "wr"), ("", "wr")]:
            exchange = self.request(b"GET", b"/moon/channels", token=token, user=user)
            self.assertError(exchange, 401)
            self.assertEqual(exchange.headers[b"www-authenticate"], b'Basic realm="rocketd"')

    def test_rightCredentials(self):
        self.assertEqual(self.request(b"GET", b"/moon/channels").status, 200)
        self.assertEqual(self.request(b"GET", b"/apps/chat/channels", token=CHAT).status, 200)

    def test_authBeforeRequestErrors(self):
        """A bad request without credentials is 401, not 400 or 404."""
        self.assertError(self.request(b"POST", b"/moon/channels/bad%20name", token=None), 401)
        self.assertError(self.request(b"GET", b"/moon/channels/a/b", token=None), 401)

    def test_bareVhostPath(self):
        """The vhost path itself is the WebSocket frontend's (404 for now)."""
        self.assertError(self.request(b"GET", b"/moon"), 404)
        self.assertError(self.request(b"GET", b"/apps/chat", token=CHAT), 404)

    def test_unknownVhostLookingLikeAPath(self):
        """Without an API word, the whole path is read as a vhost path."""
        self.assertError(self.request(b"GET", b"/moon/nothing/here", token=None), 404)

    def test_trailingSlash(self):
        self.assertEqual(self.request(b"GET", b"/moon/channels/").status, 200)

    def test_unknownPathUnderVhost(self):
        for path in [b"/moon/channels/a/b", b"/moon/channels/a/events/x", b"/moon/token/x"]:
            self.assertError(self.request(b"GET", path), 404)

    def test_methodNotAllowed(self):
        exchange = self.request(b"PUT", b"/moon/channels/x")
        self.assertError(exchange, 405)
        self.assertEqual(exchange.headers[b"allow"], b"GET, POST, DELETE")
        self.assertError(self.request(b"POST", b"/moon/token"), 405)
        self.assertError(self.request(b"GET", b"/moon/channels/x/events"), 405)

    def test_engineErrorsByTheOneTable(self):
        """Each engine error is answered with the status of rocketd.http.errors, its sentence as JSON."""
        from rocketd.http.errors import STATUSES

        for kind, status in STATUSES:
            self.channels.listChannels = lambda vhost, kind=kind: fail(kind("It went wrong."))
            exchange = self.request(b"GET", b"/moon/channels")
            self.assertEqual((exchange.status, exchange.json()), (status, {"error": "It went wrong."}))
            self.assertEqual(exchange.headers[b"content-type"], b"application/json")


class ChannelTests(BackendTestCase):
    def test_open(self):
        exchange = self.request(b"POST", b"/moon/channels/asteroids")
        self.assertEqual(exchange.status, 202)
        self.assertEqual(exchange.headers[b"location"], b"/moon/channels/asteroids")
        self.assertEqual(exchange.json(), {})
        domain = self.successResultOf(self.engine.getDomain("moon"))
        feed = self.successResultOf(domain.getFeed("asteroids"))
        self.assertEqual(feed.type, "fanout")
        # Opening it again is fine.
        self.assertEqual(self.request(b"POST", b"/moon/channels/asteroids").status, 202)

    def test_multiSegmentVhost(self):
        exchange = self.request(b"POST", b"/apps/chat/channels/room.1", token=CHAT)
        self.assertEqual(exchange.status, 202)
        self.assertEqual(exchange.headers[b"location"], b"/apps/chat/channels/room.1")
        listing = self.request(b"GET", b"/apps/chat/channels", token=CHAT).json()
        self.assertEqual(listing, {"channels": [{"name": "room.1", "subscribers": 0}]})
        self.assertEqual(self.request(b"GET", b"/moon/channels").json(), {"channels": []})

    def test_channelNamedLikeAWord(self):
        """A channel may be named 'events' or 'token': the vhost ends at the first API word."""
        self.assertEqual(self.request(b"POST", b"/moon/channels/events").status, 202)
        self.assertEqual(self.request(b"POST", b"/moon/channels/token").status, 202)
        fired = self.request(b"POST", b"/moon/channels/events/events", body={"trigger": {"event": "e"}})
        self.assertEqual(fired.status, 202)
        names = [c["name"] for c in self.request(b"GET", b"/moon/channels").json()["channels"]]
        self.assertEqual(names, ["events", "token"])

    def test_invalidNames(self):
        for name in [b"-x", b".x", b"a%20b", b"x" * 129, b"default", b"amq.x", b"%C3%A9"]:
            self.assertError(self.request(b"POST", b"/moon/channels/" + name), 400)
        # A trailing slash is ignored: this is the channel list, which takes no POST.
        self.assertError(self.request(b"POST", b"/moon/channels/"), 405)

    def test_conflictWithAnotherFeed(self):
        domain = self.successResultOf(self.engine.getDomain("moon"))
        self.successResultOf(domain.createFeed("news", "topic"))
        self.assertError(self.request(b"POST", b"/moon/channels/news"), 409)
        self.assertEqual(self.request(b"GET", b"/moon/channels").json(), {"channels": []})
        self.assertError(self.request(b"DELETE", b"/moon/channels/news"), 404)

    def test_listCountsSubscribers(self):
        self.request(b"POST", b"/moon/channels/b")
        self.request(b"POST", b"/moon/channels/a")
        self.subscribe("moon", "b")
        self.subscribe("moon", "b")
        self.assertEqual(
            self.request(b"GET", b"/moon/channels").json(),
            {"channels": [{"name": "a", "subscribers": 0}, {"name": "b", "subscribers": 2}]},
        )
        self.assertEqual(self.request(b"GET", b"/moon/channels/b").json(), {"name": "b", "subscribers": 2})

    def test_close(self):
        self.request(b"POST", b"/moon/channels/asteroids")
        pipe = self.subscribe("moon", "asteroids")
        closed = []
        self.channels.addClosedObserver(lambda vhost, name: closed.append((vhost.path, name)))
        exchange = self.request(b"DELETE", b"/moon/channels/asteroids")
        self.assertEqual(exchange.status, 202)
        self.assertEqual(closed, [("/moon", "asteroids")])
        self.assertEqual(self.successResultOf(pipe.listJoins())[1:], [])
        self.assertError(self.request(b"DELETE", b"/moon/channels/asteroids"), 404)
        self.assertError(self.request(b"GET", b"/moon/channels/asteroids"), 404)

    def test_adminMethods(self):
        """The methods the admin API uses take a vhost or its path."""
        vhost = self.vhosts.get("/moon")
        self.assertTrue(self.successResultOf(self.channels.openChannel(vhost, "x")))
        self.assertFalse(self.successResultOf(self.channels.openChannel("/moon", "x")))
        self.assertEqual(self.successResultOf(self.channels.listChannels(vhost)), [{"name": "x", "subscribers": 0}])
        self.failureResultOf(self.channels.openChannel(vhost, "bad name"), InvalidName)
        self.failureResultOf(self.channels.openChannel("/venus", "x"), NoSuchResource)
        self.successResultOf(self.channels.closeChannel(vhost, "x"))
        self.failureResultOf(self.channels.closeChannel(vhost, "x"), NoSuchResource)
        self.assertEqual(self.workers.listWorkers(vhost), [])


class FireTests(BackendTestCase):
    def setUp(self):
        BackendTestCase.setUp(self)
        self.request(b"POST", b"/moon/channels/asteroids")
        self.pipe = self.subscribe("moon", "asteroids")

    def fire(self, body, channel=b"asteroids"):
        return self.request(b"POST", b"/moon/channels/" + channel + b"/events", body=body,
                            headers=[b"Content-Type: application/json"])

    def test_fire(self):
        """Subscribers (here a RestMS pipe) receive the event, with the channel added."""
        exchange = self.fire({"trigger": {"event": "hello", "data": {"from": "joe", "channel": "x"}}})
        self.assertEqual(exchange.status, 202)
        self.assertEqual(exchange.json(), {})
        [held] = self.successResultOf(self.pipe.listMessages())
        self.assertEqual(held.message.address, "hello")
        self.assertEqual(held.message.contents[0].type, "application/json")
        self.assertEqual(json.loads(held.message.contents[0].body), {"hello": {"from": "joe", "channel": "asteroids"}})

    def test_sameBytesForEverySubscriber(self):
        other = self.subscribe("moon", "asteroids")
        self.fire({"trigger": {"event": "hello", "data": {}}})
        [a], [b] = self.bodies(self.pipe), self.bodies(other)
        self.assertIs(a, b)

    def test_dataMayBeLeftOut(self):
        self.assertEqual(self.fire({"trigger": {"event": "ping"}}).status, 202)
        self.assertEqual([json.loads(b) for b in self.bodies(self.pipe)], [{"ping": {"channel": "asteroids"}}])

    def test_badBodies(self):
        for body in [b"", b"{not json", b"[]", b'{"trigger": 1}', b'{"event": "x"}',
                     b'{"trigger": {"data": {}}}', b'{"trigger": {"event": ""}}', b'{"trigger": {"event": 3}}',
                     b'{"trigger": {"event": "x", "data": [1]}}', b'{"trigger": {"event": "x", "data": {"n": NaN}}}',
                     b'{"trigger": {"event": ":connected"}}', b"\xff\xfe\x00", b"[" * 100000]:
            self.assertError(self.fire(body), 400)
        self.assertEqual(self.bodies(self.pipe), [])

    def test_unknownChannel(self):
        self.assertError(self.fire({"trigger": {"event": "hello"}}, channel=b"nowhere"), 404)

    def test_helpers(self):
        self.assertEqual(parseTrigger(b'{"trigger": {"event": "e", "data": {"a": 1}}, "x": 1}'), ("e", {"a": 1}))
        message = channelEventMessage("c", "e", {"a": 1})
        self.assertEqual(message.contents[0].body, b'{"e":{"a":1,"channel":"c"}}')
        self.assertRaises(InvalidName, checkChannelName, "")
        self.assertRaises(InvalidArgument, channelEventMessage, "c", ":x", {})


class TokenTests(BackendTestCase):
    def test_token(self):
        exchange = self.request(b"GET", b"/moon/token?uid=joe&channels=.*foo%7Cbar.*")
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.headers[b"cache-control"], b"no-store")
        token = exchange.json()["token"]
        self.assertTrue(re.fullmatch("[0-9a-f]{128}", token))
        grant = self.app.tokens.consume(token, "/moon")
        self.assertEqual((grant.uid, grant.channelsPattern), ("joe", ".*foo|bar.*"))
        self.assertTrue(grant.allows("lefoo"))
        self.assertFalse(grant.allows("lefoobar"))
        self.assertIsNone(self.app.tokens.consume(token, "/moon"))

    def test_expires(self):
        token = self.request(b"GET", b"/moon/token?uid=joe&channels=x").json()["token"]
        self.clock.advance(60)
        self.assertIsNone(self.app.tokens.consume(token, "/moon"))

    def test_errors(self):
        for query in [b"", b"?uid=", b"?uid=joe&channels=(", b"?uid=joe&channels=%FF"]:
            self.assertError(self.request(b"GET", b"/moon/token" + query), 400)

    def test_tokenChangeVoidsBrowserTokens(self):
        self.successResultOf(self.vhosts.add("/venus"))
        vhostToken = self.vhosts.get("/venus").token
        token = self.request(b"GET", b"/venus/token?uid=joe", token=vhostToken).json()["token"]
        self.successResultOf(self.vhosts.regenerateToken("/venus"))
        self.assertIsNone(self.app.tokens.consume(token, "/venus"))
        self.assertError(self.request(b"GET", b"/venus/token?uid=joe", token=vhostToken), 401)


class EventStreamTests(BackendTestCase):
    def stream(self, query=b"", vhost=b"/moon", token=MOON):
        return self.request(b"GET", vhost + b"/events" + query, token=token)

    def test_headersAtOnce(self):
        exchange = self.stream()
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.headers[b"content-type"], b"text/event-stream; charset=utf-8")
        self.assertEqual(exchange.headers[b"cache-control"], b"no-cache")
        self.assertEqual(exchange.headers[b"connection"], b"keep-alive")
        self.assertEqual(exchange.body, COMMENT_OPEN)
        self.assertFalse(exchange.ended)

    def test_framesAndHeartbeat(self):
        exchange = self.stream(b"?filter=asteroids/(hello%7Cbye)")
        self.successResultOf(self.app.workers.trigger("/moon", "asteroids", "hello", {"a": 1}, sid="s1", uid="joe"))
        self.successResultOf(self.app.workers.trigger("/moon", "asteroids", "other", {}, sid="s1"))
        self.clock.advance(15)
        self.successResultOf(self.app.workers.trigger("/moon", "asteroids", "bye", {}, sid="s2"))
        self.assertEqual(
            exchange.body,
            COMMENT_OPEN
            + b'id: 1\nevent: asteroids/hello\ndata: {"a":1,"sid":"s1","uid":"joe"}\n\n'
            + COMMENT_PING
            + b'id: 3\nevent: asteroids/bye\ndata: {"sid":"s2"}\n\n',
        )

    def test_badFilter(self):
        for query in [b"?filter=(", b"?filter=%FF", b"?filter=" + b"a" * 2000]:
            exchange = self.stream(query)
            self.assertError(exchange, 400)
        self.assertEqual(self.workers.listWorkers("/moon"), [])

    def test_disconnectCleansUp(self):
        """A worker that goes is removed, and what it held goes to the next one."""
        first = self.stream()
        self.assertEqual(len(self.workers.listWorkers("/moon")), 1)
        first.transport.producer.pauseProducing()  # its socket is full
        self.successResultOf(self.app.workers.trigger("/moon", "c", "e", {}, sid="s"))
        self.assertEqual(first.body, COMMENT_OPEN)
        first.disconnect()
        self.assertEqual(self.workers.listWorkers("/moon"), [])
        # Its heartbeat stopped; only the backlog's expiry timer is left.
        self.assertEqual([c for c in self.clock.getDelayedCalls() if "LoopingCall" in repr(c)], [])
        second = self.stream()
        self.assertEqual(second.body, COMMENT_OPEN + b'id: 1\nevent: c/e\ndata: {"sid":"s"}\n\n')

    def test_resumeAfterBackpressure(self):
        exchange = self.stream()
        exchange.transport.producer.pauseProducing()
        self.successResultOf(self.app.workers.trigger("/moon", "c", "e", {}, sid="s"))
        self.assertEqual(exchange.body, COMMENT_OPEN)
        exchange.transport.producer.resumeProducing()
        self.assertEqual(exchange.body, COMMENT_OPEN + b'id: 1\nevent: c/e\ndata: {"sid":"s"}\n\n')

    def test_vhostDeletedEndsStreams(self):
        vhost = self.successResultOf(self.vhosts.add("/venus"))
        exchange = self.stream(vhost=b"/venus", token=vhost.token)
        self.assertFalse(exchange.ended)
        self.successResultOf(self.vhosts.delete("/venus"))
        self.assertTrue(exchange.ended)
        self.assertEqual(self.workers.listWorkers("/venus"), [])

    def test_triggerOverHTTP(self):
        """POST /:vhost/events (an extension) sends an event to the workers, like a browser's trigger."""
        exchange = self.stream()
        trigger = {"trigger": {"event": "hello", "channel": "c", "data": {"a": 1}}}
        posted = self.request(b"POST", b"/moon/events", body=trigger)
        self.assertEqual(posted.status, 202)
        self.assertEqual(posted.json(), {"id": 1})
        posted = self.request(b"POST", b"/moon/events", body={"trigger": {"event": "tick"}})
        self.assertEqual(posted.json(), {"id": 2})
        self.assertEqual(
            exchange.body,
            COMMENT_OPEN + b'id: 1\nevent: c/hello\ndata: {"a":1}\n\n' + b"id: 2\nevent: tick\ndata: {}\n\n",
        )

    def test_triggerOverHTTPErrors(self):
        for body in [b"nope", {"trigger": {"event": ""}}, {"trigger": {"event": "e", "channel": "bad name"}},
                     {"trigger": {"event": "e", "channel": 5}}, {"trigger": {"event": "e", "data": 1}}]:
            self.assertError(self.request(b"POST", b"/moon/events", body=body), 400)
        self.assertError(self.request(b"POST", b"/moon/events", body={"trigger": {"event": "e"}}, token=None), 401)
        self.assertEqual(self.request(b"PUT", b"/moon/events").headers[b"allow"], b"GET, POST")
