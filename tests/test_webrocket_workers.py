"""
Tests for L{rocketd.webrocket.workers}: the worker pool on the embedded
engine (round-robin, filters, backlog, clean-up) and the event framing.
"""

import json

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import TestCase

from rocketd.engine.memory import MemoryEngine
from rocketd.engine.predicates import AddressMatches
from rocketd.errors import InvalidArgument, NoSuchResource
from rocketd.webrocket.vhosts import VhostRegistry
from rocketd.webrocket.workers import (
    WorkerPool,
    formatTriggeredEvent,
    triggeredEventMessage,
)
from tests.support import temporaryDirectory

TOKEN = "0123456789abcdef0123456789abcdef01234567"


class FakeStream:
    """Has the shape of L{rocketd.http.sse.SSEStream} that a worker uses."""

    def __init__(self):
        self.frames = []
        self.open = True
        self.paused = False
        self.closed = False
        self._writable = []

    def send(self, frame):
        if not self.open:
            return False
        self.frames.append(frame)
        return True

    def whenWritable(self):
        if not self.open:
            return succeed(False)
        if not self.paused:
            return succeed(True)
        d = Deferred()
        self._writable.append(d)
        return d

    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False
        waiters, self._writable = self._writable, []
        for d in waiters:
            d.callback(True)

    def disconnect(self):
        self.open = False
        waiters, self._writable = self._writable, []
        for d in waiters:
            d.callback(False)

    def close(self):
        self.closed = True
        self.disconnect()

    def events(self):
        """The (id, event, data) of every frame written."""
        out = []
        for frame in self.frames:
            fields = dict(line.split(": ", 1) for line in frame.decode().strip("\n").split("\n"))
            out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
        return out

    def names(self):
        return [event for _, event, _ in self.events()]


class FormatTests(TestCase):
    """The triggered event's message and SSE frame."""

    def test_frame(self):
        message = triggeredEventMessage(7, "chat", "hello", {"text": "hi\nthere"}, sid="s1", uid="joe")
        self.assertEqual(message.address, "chat/hello")
        self.assertEqual(
            formatTriggeredEvent(message),
            b'id: 7\nevent: chat/hello\ndata: {"text":"hi\\nthere","sid":"s1","uid":"joe"}\n\n',
        )

    def test_noChannelNoUid(self):
        message = triggeredEventMessage(1, None, "ping", None, sid="s1")
        self.assertEqual(formatTriggeredEvent(message), b'id: 1\nevent: ping\ndata: {"sid":"s1"}\n\n')

    def test_encodedOnce(self):
        message = triggeredEventMessage(1, "c", "e", {})
        self.assertIs(formatTriggeredEvent(message), formatTriggeredEvent(message))

    def test_invalid(self):
        for channel, event, data in [("c", "", {}), ("c", None, {}), ("c", "e", [1]), ("", "e", {}),
                                     ("c", "e", {"x": float("nan")}), ("c", "e", {"x": object()})]:
            self.assertRaises(InvalidArgument, triggeredEventMessage, 1, channel, event, data)


class WorkerPoolTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.engine = MemoryEngine(self.clock)
        path = temporaryDirectory(self).child("vhosts.json")
        self.vhosts = VhostRegistry(self.engine, path, self.clock, declared={"/moon": TOKEN, "/mars": "f" * 40})
        self.successResultOf(self.vhosts.load())
        self.pool = WorkerPool(self.engine, self.vhosts, self.clock, backlog=3, backlogAge=60.0)

    def connect(self, filter=".*", vhost="/moon"):
        stream = FakeStream()
        worker = self.successResultOf(self.pool.connect(vhost, filter, stream))
        return worker, stream

    def trigger(self, channel, event, vhost="/moon", **data):
        return self.successResultOf(self.pool.trigger(vhost, channel, event, data, sid="s"))

    def test_roundRobin(self):
        """Each event goes to exactly one worker, in turn."""
        _, a = self.connect()
        _, b = self.connect()
        for i in range(4):
            self.trigger("chat", "e%d" % i)
        self.assertEqual(a.names(), ["chat/e0", "chat/e2"])
        self.assertEqual(b.names(), ["chat/e1", "chat/e3"])

    def test_failedAttachment(self):
        """
        A worker whose attachment fails is cleaned up; the failure goes to
        the caller, and only there (nothing logged as unhandled).
        """
        from twisted.internet.defer import fail

        from rocketd.errors import LimitReached

        domain = self.successResultOf(self.engine.getDomain("moon"))
        self.patch(domain, "createPipe", lambda **kwargs: fail(LimitReached("No more pipes.")))
        with capturedLogs() as events:
            self.failureResultOf(self.pool.connect("/moon", ".*", FakeStream()), LimitReached)
        self.assertEqual(self.pool.listWorkers("/moon"), [])
        self.assertEqual([e for e in events if e.get("log_level") != LogLevel.debug], [])

    def test_filtersAreAnchored(self):
        _, chat = self.connect("chat/.*")
        _, news = self.connect("news/(hot|cold)")
        self.trigger("chat", "x")
        self.trigger("news", "hot")
        self.trigger("news", "hotter")  # matches no filter: kept in the backlog
        self.trigger("mychat", "x")
        self.assertEqual(chat.names(), ["chat/x"])
        self.assertEqual(news.names(), ["news/hot"])

    def test_filterIsAnAddressPredicate(self):
        """A worker's join carries its filter as an AddressMatches value, which any engine can keep."""
        self.connect("chat/.*")
        domain = self.successResultOf(self.engine.getDomain("moon"))
        [pipe] = self.successResultOf(domain.listPipes())
        joins = self.successResultOf(pipe.listJoins())
        self.assertEqual([join.predicate for join in joins], [None, AddressMatches("chat/.*")])

    def test_overlappingFilters(self):
        """Workers whose filters overlap share the events they both match, each event once."""
        _, a = self.connect("chat/.*")
        _, b = self.connect(".*/hello")
        for i in range(3):
            self.trigger("chat", "hello")
        self.trigger("news", "hello")
        self.trigger("chat", "bye")
        ids = sorted(i for s in (a, b) for i, _, _ in s.events())
        self.assertEqual(ids, [1, 2, 3, 4, 5])
        self.assertIn("news/hello", b.names())
        self.assertIn("chat/bye", a.names())

    def test_eventData(self):
        _, a = self.connect()
        eventId = self.successResultOf(self.pool.trigger("/moon", "chat", "hi", {"text": "yo"}, sid="s1", uid="joe"))
        self.assertEqual(a.events(), [(eventId, "chat/hi", {"text": "yo", "sid": "s1", "uid": "joe"})])

    def test_idsCountPerVhost(self):
        self.assertEqual(self.trigger("c", "e"), 1)
        self.assertEqual(self.trigger("c", "e"), 2)
        self.assertEqual(self.trigger("c", "e", vhost="/mars"), 1)

    def test_backlogUntilAWorkerMatches(self):
        """With no matching worker, events wait, and go in order to the first one that matches."""
        _, news = self.connect("news/.*")
        self.trigger("chat", "a")
        self.trigger("chat", "b")
        self.assertEqual(news.frames, [])
        _, chat = self.connect("chat/.*")
        self.assertEqual(chat.names(), ["chat/a", "chat/b"])
        # The backlog is empty now: a second matching worker gets nothing old.
        _, late = self.connect("chat/.*")
        self.assertEqual(late.frames, [])

    def test_backlogIsBounded(self):
        for i in range(5):
            self.trigger("chat", "e%d" % i)
        self.assertEqual(self.pool.dropped("/moon"), 2)
        _, a = self.connect()
        self.assertEqual(a.names(), ["chat/e2", "chat/e3", "chat/e4"])

    def test_backlogAge(self):
        self.trigger("chat", "old")
        self.clock.advance(30)
        self.trigger("chat", "new")
        self.clock.advance(31)
        _, a = self.connect()
        self.assertEqual(a.names(), ["chat/new"])
        self.assertEqual(self.pool.dropped("/moon"), 1)

    def test_droppedEventsAreLogged(self):
        """Drops are logged as a warning with the running count, at most once a minute."""

        def warnings(events):
            return [(e["vhost"], e["dropped"]) for e in events if e["log_level"] == LogLevel.warn and "vhost" in e]

        with capturedLogs() as events:
            for i in range(6):
                self.trigger("chat", "e%d" % i)
            self.assertEqual(warnings(events), [("/moon", 1)])
            self.clock.advance(60)  # the three kept events expire too
            self.trigger("chat", "late")
        self.assertEqual(warnings(events), [("/moon", 1), ("/moon", 6)])

    def test_vhostsAreSeparate(self):
        _, moon = self.connect(vhost="/moon")
        _, mars = self.connect(vhost="/mars")
        self.trigger("c", "e", vhost="/mars")
        self.assertEqual(moon.frames, [])
        self.assertEqual(mars.names(), ["c/e"])

    def test_pausedWorkerHoldsThenResumes(self):
        """A paused stream keeps its events in its pipe and gets them when writable again."""
        _, a = self.connect()
        a.pause()
        self.trigger("c", "1")
        self.trigger("c", "2")
        self.assertEqual(a.frames, [])
        a.resume()
        self.assertEqual(a.names(), ["c/1", "c/2"])
        self.trigger("c", "3")
        self.assertEqual(a.names(), ["c/1", "c/2", "c/3"])

    def test_disconnectPutsBackWhatWasNotWritten(self):
        """A worker that goes loses nothing that was not written: another worker gets it."""
        wa, a = self.connect()
        wb, b = self.connect()
        self.trigger("c", "1")  # to a
        a.pause()
        self.trigger("c", "2")  # to b
        self.trigger("c", "3")  # to a, held in its pipe
        self.trigger("c", "4")  # to b
        a.disconnect()
        self.assertEqual(self.successResultOf(wa.disconnect()), 1)
        self.assertEqual(a.names(), ["c/1"])
        self.assertEqual(sorted(b.names()), ["c/2", "c/3", "c/4"])
        ids = [i for s in (a, b) for i, _, _ in s.events()]
        self.assertEqual(sorted(ids), [1, 2, 3, 4])
        self.assertEqual([w["id"] for w in self.pool.listWorkers("/moon")], [wb.id])

    def test_disconnectWithNoOtherWorkerKeepsEventsInBacklog(self):
        wa, a = self.connect()
        a.pause()
        self.trigger("c", "1")
        self.trigger("c", "2")
        a.disconnect()
        self.assertEqual(self.successResultOf(wa.disconnect()), 2)
        # The pipe is gone, and nothing is routed to it any more.
        domain = self.successResultOf(self.engine.getDomain("moon"))
        self.assertEqual(self.successResultOf(domain.listPipes()), [])
        _, b = self.connect()
        self.assertEqual(b.names(), ["c/1", "c/2"])
        self.assertEqual([i for i, _, _ in b.events()], [1, 2])

    def test_disconnectIsIdempotent(self):
        wa, a = self.connect()
        first = wa.disconnect()
        second = wa.disconnect()
        self.assertEqual(self.successResultOf(first), 0)
        self.assertEqual(self.successResultOf(second), 0)
        self.assertTrue(a.closed)

    def test_nothingWrittenAfterDisconnection(self):
        """Between the disconnection and the clean-up, events are held back, not written."""
        wa, a = self.connect()
        a.open = False  # the client has gone; the clean-up has not run yet
        self.trigger("c", "1")
        self.assertEqual(a.frames, [])
        self.successResultOf(wa.disconnect())
        _, b = self.connect()
        self.assertEqual(b.names(), ["c/1"])

    def test_listWorkers(self):
        self.clock.advance(1000)
        wa, _ = self.connect("chat/.*")
        self.clock.advance(5)
        wb, _ = self.connect()
        self.assertEqual(
            self.pool.listWorkers("/moon"),
            [
                {"id": wa.id, "filter": "chat/.*", "connected": 1000.0},
                {"id": wb.id, "filter": ".*", "connected": 1005.0},
            ],
        )
        self.assertEqual(self.pool.listWorkers("/mars"), [])

    def test_connectErrors(self):
        self.failureResultOf(self.pool.connect("/moon", "(", FakeStream()), InvalidArgument)
        self.failureResultOf(self.pool.connect("/venus", ".*", FakeStream()), NoSuchResource)
        self.failureResultOf(self.pool.trigger("/venus", "c", "e", {}), NoSuchResource)
        self.failureResultOf(self.pool.trigger("/moon", "c", "", {}), InvalidArgument)
        self.assertEqual(self.pool.listWorkers("/moon"), [])

    def test_vhostDeletedClosesWorkers(self):
        self.successResultOf(self.vhosts.add("/venus"))
        wa, a = self.connect(vhost="/venus")
        self.successResultOf(self.vhosts.delete("/venus"))
        self.assertTrue(a.closed)
        self.assertEqual(self.pool.listWorkers("/venus"), [])
        # A new vhost of the same path starts afresh.
        self.successResultOf(self.vhosts.add("/venus"))
        _, b = self.connect(vhost="/venus")
        self.assertEqual(self.trigger("c", "e", vhost="/venus"), 1)
        self.assertEqual(b.names(), ["c/e"])

    def test_tokenChangeClosesWorkers(self):
        self.successResultOf(self.vhosts.add("/venus"))
        _, a = self.connect(vhost="/venus")
        self.successResultOf(self.vhosts.regenerateToken("/venus"))
        self.assertTrue(a.closed)
        self.assertEqual(self.pool.listWorkers("/venus"), [])
