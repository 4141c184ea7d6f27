"""
Tests for L{rocketd.engine.predicates}: the join predicates every engine
takes, as values (matching, equality, the serialised form, the check).
"""

import json
import pickle
from dataclasses import FrozenInstanceError

from twisted.trial.unittest import SynchronousTestCase

from rocketd.engine.message import Message
from rocketd.engine.predicates import (
    MAX_PATTERN_LENGTH,
    AddressMatches,
    checkPredicate,
    predicateFromJSON,
    predicateToJSON,
)
from rocketd.errors import InvalidArgument


def takes(pattern, address):
    return AddressMatches(pattern)(Message(address=address))


class AddressMatchesTests(SynchronousTestCase):
    def test_wholeAddress(self):
        """The expression must match the whole address, and never stops before a trailing newline."""
        self.assertTrue(takes("chat/.*", "chat/a"))
        self.assertTrue(takes("chat/.*", "chat/"))
        self.assertFalse(takes("chat/.*", "xchat/a"))
        self.assertTrue(takes("a|b", "a"))
        self.assertTrue(takes("a|b", "b"))
        self.assertFalse(takes("a|b", "ab"))
        self.assertFalse(takes("a$", "a\n"))
        self.assertFalse(takes("news/(hot|cold)", "news/hotter"))
        self.assertTrue(takes("", ""))
        self.assertFalse(takes("", "a"))

    def test_noFlags(self):
        """Python syntax without flags: case counts, '.' stops at a newline (unless the pattern says)."""
        self.assertFalse(takes("chat", "CHAT"))
        self.assertTrue(takes("(?i)chat", "CHAT"))
        self.assertFalse(takes(".*", "a\nb"))

    def test_value(self):
        """Equal patterns make equal, interchangeable values; the value cannot change."""
        a, b = AddressMatches("x.*"), AddressMatches("x.*")
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(a, AddressMatches("y.*"))
        self.assertEqual({a: 1}[b], 1)
        self.assertEqual(repr(a), "AddressMatches(pattern='x.*')")
        self.assertRaises(FrozenInstanceError, setattr, a, "pattern", "y")
        copy = pickle.loads(pickle.dumps(a))
        self.assertEqual(copy, a)
        self.assertTrue(copy(Message(address="xyz")))

    def test_serialised(self):
        """The serialised form is plain JSON and reads back as an equal predicate."""
        predicate = AddressMatches(r"chat/\w+")
        data = predicate.toJSON()
        self.assertEqual(data, {"type": "addressMatches", "pattern": r"chat/\w+"})
        again = AddressMatches.fromJSON(json.loads(json.dumps(data)))
        self.assertEqual(again, predicate)
        self.assertTrue(again(Message(address="chat/room1")))
        self.assertEqual(predicateFromJSON(predicateToJSON(predicate)), predicate)
        self.assertIsNone(predicateToJSON(None))
        self.assertIsNone(predicateFromJSON(None))

    def test_badSerialisedForms(self):
        for bad in (
            "chat/.*",
            ["addressMatches", "x"],
            {"pattern": "x"},
            {"type": "other", "pattern": "x"},
            {"type": "addressMatches", "pattern": "x", "flags": 2},
            {"type": "addressMatches", "pattern": 3},
            {"type": "addressMatches", "pattern": "("},
        ):
            self.assertRaises(InvalidArgument, predicateFromJSON, bad)

    def test_badPatterns(self):
        """A pattern that is not a string, too long or not an expression is refused with a sentence."""
        for bad in (None, 3, b"x", "(", "a{2,1}", "x" * (MAX_PATTERN_LENGTH + 1)):
            e = self.assertRaises(InvalidArgument, AddressMatches, bad)
            self.assertTrue(str(e).endswith("."), str(e))
        self.assertEqual(AddressMatches("x" * MAX_PATTERN_LENGTH).pattern, "x" * MAX_PATTERN_LENGTH)


class CheckPredicateTests(SynchronousTestCase):
    def test_accepted(self):
        predicate = AddressMatches("x")
        self.assertIs(checkPredicate(predicate), predicate)
        self.assertIsNone(checkPredicate(None))

    def test_refused(self):
        """Only None and AddressMatches itself: no callable, no subclass (it may carry code)."""

        class Subclass(AddressMatches):
            def __call__(self, message):
                return True

        for bad in (lambda m: True, "x", {"type": "addressMatches", "pattern": "x"}, Subclass("x")):
            self.assertRaises(InvalidArgument, checkPredicate, bad)
            self.assertRaises(InvalidArgument, predicateToJSON, bad)
