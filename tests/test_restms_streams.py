"""
Tests for the shared encoding of streamed messages
(L{rocketd.restms.documents.renderStreamedMessage} and the SSE frames of
L{rocketd.restms._streams}).
"""

import json
from types import SimpleNamespace

from twisted.trial.unittest import TestCase

from rocketd.engine.message import Content, Message
from rocketd.restms import _streams
from rocketd.restms._uris import DEFAULT_DOMAIN
from rocketd.restms.documents import renderStreamedMessage

BASE = b"http://example.com"


def message(**kwargs):
    feed = SimpleNamespace(name="news", domain=DEFAULT_DOMAIN, hash="F" * 24)
    return Message(feed=feed, **kwargs)


class StreamedMessageTests(TestCase):
    def test_noHrefs(self):
        """
        A streamed message's document has its feed URI but neither the
        message's href nor its contents' hrefs (it is deleted once written).
        """
        m = message(address="a.b", properties={"message_id": "m1"}, contents=(Content("text/plain", b"hi"),))
        data = json.loads(renderStreamedMessage(m, "json", BASE))["restms"]["message"][0]
        self.assertEqual(data["address"], "a.b")
        self.assertEqual(data["message_id"], "m1")
        self.assertEqual(data["feed"], "http://example.com/restms/feed/news")
        self.assertNotIn("href", data)
        self.assertNotIn("href", data["content"][0])
        self.assertEqual(data["content"][0]["length"], "2")

    def test_encodedOnce(self):
        """
        The document is encoded once per message, representation and base:
        the same bytes object comes back.
        """
        m = message(address="a")
        first = renderStreamedMessage(m, "json", BASE)
        self.assertIs(renderStreamedMessage(m, "json", BASE), first)
        other = renderStreamedMessage(m, "json", b"http://other.example")
        self.assertIn(b"http://other.example/restms/feed/news", other)


class SharedEventTests(TestCase):
    def test_sharedEvent(self):
        """
        The shared part of an SSE frame is the event and data lines and the
        blank line; a frame is the pipe's id line followed by it.
        """
        m = message(address="rec.pets")
        shared = _streams._sharedEvent(m, BASE)
        self.assertEqual(shared, b"event: rec.pets\ndata: " + renderStreamedMessage(m, "json", BASE) + b"\n\n")

    def test_addressWithLineBreak(self):
        """An address that can't be an event type goes out as the default event."""
        shared = _streams._sharedEvent(message(address="a\nb"), BASE)
        self.assertTrue(shared.startswith(b"data: "))
