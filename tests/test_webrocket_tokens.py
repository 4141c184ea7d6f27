"""Tests for L{rocketd.webrocket.tokens}: anchored expressions and single-use browser tokens."""

import re

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rocketd.errors import InvalidArgument
from rocketd.webrocket.tokens import MAX_PATTERN_LENGTH, Grant, TokenStore, anchoredPattern


class AnchoredPatternTests(TestCase):
    """L{anchoredPattern} matches the whole text, as C{^(P)$} would."""

    def test_alternationIsAnchoredAsAWhole(self):
        pattern = anchoredPattern(".*foo|bar.*")
        self.assertTrue(pattern.fullmatch("lefoo"))
        self.assertTrue(pattern.fullmatch("barle"))
        self.assertFalse(pattern.fullmatch("lefoobar"))
        self.assertFalse(pattern.fullmatch("lebar"))

    def test_noMatchBeforeTrailingNewline(self):
        """Unlike C{$}, the end anchor does not match before a final newline."""
        self.assertFalse(anchoredPattern("foo").fullmatch("foo\n"))
        self.assertTrue(anchoredPattern("foo").fullmatch("foo"))

    def test_prefixIsNotEnough(self):
        self.assertFalse(anchoredPattern("chat").fullmatch("chatroom"))
        self.assertFalse(anchoredPattern("chat").fullmatch("mychat"))

    def test_inlineFlags(self):
        """Leading inline flags keep working (the expression is not wrapped)."""
        self.assertTrue(anchoredPattern("(?i)chat").fullmatch("CHAT"))

    def test_invalid(self):
        for bad in ["(", "[a-", "*x", "a{2,1}"]:
            e = self.assertRaises(InvalidArgument, anchoredPattern, bad, "filter")
            self.assertIn("filter", e.message)

    def test_tooLong(self):
        self.assertRaises(InvalidArgument, anchoredPattern, "a" * (MAX_PATTERN_LENGTH + 1))

    def test_notAString(self):
        self.assertRaises(InvalidArgument, anchoredPattern, None)

    def test_hugeRepetitionIsRefused(self):
        self.assertRaises(InvalidArgument, anchoredPattern, "a{99999999999999999999}")


class TokenStoreTests(TestCase):
    """L{TokenStore}: single-use, expiring tokens on an injected clock."""

    def setUp(self):
        self.clock = Clock()
        self.store = TokenStore(self.clock, ttl=60.0)

    def test_tokenShape(self):
        token = self.store.issue("/moon", "joe", "chat")
        self.assertTrue(re.fullmatch("[0-9a-f]{128}", token))
        self.assertNotEqual(token, self.store.issue("/moon", "joe", "chat"))

    def test_consumeGivesTheGrant(self):
        token = self.store.issue("/moon", "joe", ".*foo|bar.*")
        grant = self.store.consume(token, "/moon")
        self.assertEqual(grant, Grant("joe", ".*foo|bar.*", "/moon"))
        self.assertTrue(grant.allows("lefoo"))
        self.assertTrue(grant.allows("barle"))
        self.assertFalse(grant.allows("lefoobar"))
        self.assertFalse(grant.allows("lebar"))

    def test_singleUse(self):
        token = self.store.issue("/moon", "joe", "chat")
        self.assertIsNotNone(self.store.consume(token))
        self.assertIsNone(self.store.consume(token))

    def test_expires(self):
        token = self.store.issue("/moon", "joe", "chat")
        other = self.store.issue("/moon", "ann", "chat")
        self.clock.advance(59.9)
        self.assertIsNotNone(self.store.consume(token))
        self.clock.advance(0.1)
        self.assertIsNone(self.store.consume(other))

    def test_unknown(self):
        self.assertIsNone(self.store.consume("0" * 128))
        self.assertIsNone(self.store.consume(None))

    def test_otherVhost(self):
        """A token presented to another vhost is refused, and used up."""
        token = self.store.issue("/moon", "joe", "chat")
        self.assertIsNone(self.store.consume(token, "/mars"))
        self.assertIsNone(self.store.consume(token, "/moon"))

    def test_emptyChannelsAllowsNothing(self):
        grant = self.store.consume(self.store.issue("/moon", "joe", ""))
        self.assertFalse(grant.allows("private-chat"))

    def test_badArguments(self):
        self.assertRaises(InvalidArgument, self.store.issue, "/moon", "", "chat")
        self.assertRaises(InvalidArgument, self.store.issue, "/moon", "x" * 1000, "chat")
        self.assertRaises(InvalidArgument, self.store.issue, "/moon", "joe", "(")
        self.assertEqual(len(self.store), 0)

    def test_expiredTokensAreSwept(self):
        for i in range(5):
            self.store.issue("/moon", "u%d" % i, "")
        self.clock.advance(61)
        self.store.issue("/moon", "late", "")
        self.assertEqual(len(self.store), 1)

    def test_discardVhost(self):
        moon = self.store.issue("/moon", "joe", "")
        mars = self.store.issue("/mars", "joe", "")
        self.store.discardVhost("/moon")
        self.assertIsNone(self.store.consume(moon))
        self.assertIsNotNone(self.store.consume(mars))
