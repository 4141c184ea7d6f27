"""
Tests for L{rocketd.http.errors}: the one table of engine errors to HTTP
statuses that every face answers with.
"""

from twisted.trial.unittest import TestCase

from rocketd import errors
from rocketd.http.errors import STATUSES, HTTPError, answerOf, statusOf

#: Every engine error with the status a client sees, whatever the face.
EXPECTED = {
    errors.NoSuchResource: 404,
    errors.ContentGone: 404,
    errors.InvalidName: 400,
    errors.InvalidArgument: 400,
    errors.Forbidden: 403,
    errors.Conflict: 409,
    errors.LimitReached: 507,
    errors.EngineUnavailable: 503,
}


class StatusTests(TestCase):
    def test_everyEngineError(self):
        """Each engine error the engine raises has its status."""
        self.assertEqual({kind: statusOf(kind("x")) for kind in EXPECTED}, EXPECTED)

    def test_tableCoversTheEngineErrors(self):
        """Every subclass of EngineError in rocketd.errors is in the table (a new one must be given a status)."""
        kinds = {
            value
            for value in vars(errors).values()
            if isinstance(value, type) and issubclass(value, errors.EngineError) and value is not errors.EngineError
        }
        self.assertEqual(kinds, set(EXPECTED))
        self.assertEqual({kind for kind, _ in STATUSES} | {errors.ContentGone}, kinds)

    def test_notAClientError(self):
        """The base class and any other exception have no status: the face answers 500."""
        self.assertIsNone(statusOf(errors.EngineError("x")))
        self.assertIsNone(statusOf(RuntimeError("x")))
        self.assertIsNone(answerOf(errors.EngineError("x")))
        self.assertIsNone(answerOf(ValueError("x")))

    def test_answerOfEngineError(self):
        """An engine error's answer is its status and its sentence, with no header."""
        self.assertEqual(answerOf(errors.Conflict("It exists.")), (409, "It exists.", ()))

    def test_answerOfEngineUnavailable(self):
        """An engine that cannot answer now says when to retry."""
        error = errors.EngineUnavailable("Away.", retryAfter=3)
        self.assertEqual(answerOf(error), (503, "Away.", ((b"Retry-After", b"3"),)))

    def test_answerOfHTTPError(self):
        """An L{HTTPError} carries its own status, sentence and headers."""
        error = HTTPError(405, "Not here.", [(b"Allow", b"GET")])
        self.assertEqual(answerOf(error), (405, "Not here.", [(b"Allow", b"GET")]))

    def test_restmsAnswersByTheTable(self):
        """
        The RestMS face gives each engine error the table's status and
        headers (Retry-After with a 503), and its codec errors 400.
        """
        from rocketd.restms._errors import RestMSError, statusFor
        from rocketd.restms.codec import CodecError

        for kind, status in EXPECTED.items():
            headers = ((b"Retry-After", b"5"),) if kind is errors.EngineUnavailable else ()
            self.assertEqual(statusFor(kind("It went wrong.")), (status, "It went wrong.", headers))
        self.assertEqual(statusFor(CodecError("Not a document.")), (400, "Not a document.", ()))
        self.assertEqual(statusFor(RestMSError(412, "Changed.")), (412, "Changed.", ()))
        self.assertIsNone(statusFor(errors.EngineError("x")))
