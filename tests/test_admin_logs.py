"""
Tests for L{rocketd.admin.logs}: query values (and odd names) never reach
the access log; the JSON observer writes one object per line.
"""

import io
import json

from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from rocketd.admin.logs import JSONLinesObserver, redactQuery


class RedactTests(TestCase):
    def test_valuesRedacted(self):
        self.assertEqual(redactQuery("/moon?token=abc&uid=joe"), "/moon?token=-&uid=-")

    def test_bareTokenRedacted(self):
        """An argument with no value, or a name no word, is redacted whole."""
        self.assertEqual(redactQuery("/a?" + "ab12" * 16), "/a?-=-")
        self.assertEqual(redactQuery("/a?0123"), "/a?-=-")

    def test_noQuery(self):
        self.assertEqual(redactQuery("/restms/domain/"), "/restms/domain/")
        self.assertEqual(redactQuery("/a?"), "/a?")
        self.assertEqual(redactQuery("/a?&&"), "/a?-")


class JSONObserverTests(TestCase):
    def test_oneObjectPerLine(self):
        """Each event is one line of JSON, with its sentence as C{text}."""
        out = io.StringIO()
        log = Logger(observer=JSONLinesObserver(out), namespace="t")
        log.info("hello {who}", who="world")
        log.warn("two\\nlines")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual((first["text"], first["who"], first["log_namespace"]), ("hello world", "world", "t"))
        self.assertEqual(json.loads(lines[1])["text"], "two\\nlines")
