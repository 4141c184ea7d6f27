"""
What every resource of one embedded engine shares: the L{Core} (clock,
limits, the registry of hashes, counters, the pipes to serve when the
operation under way ends) and the L{operation} bracket that makes a method
an engine operation.

Conventions of the package: a name with a leading underscore is private to
its module; the members one module's classes use on another's are plain
names, listed under "Engine-internal" in the class's docstring. They are
not part of L{rocketd.interfaces}: no face calls them.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Dict, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from rocketd.droplog import DropWarnings
from rocketd.engine._hashes import HashSource
from rocketd.errors import InvalidArgument

#: The feed types whose messages go to one join at a time.
ROTATING = ("rotator", "service")
#: The addresses of a rotator or service join that take every message.
ANY_ADDRESS = ("*", "#")
#: A default that no dict holds.
MISSING = object()

#: The package's log (consumers and listeners that fail).
log = Logger(namespace="rocketd.engine.memory")


def bracket(method, answers: bool = True):
    """
    Run a method inside the engine's busy/flush bracket: pipes notified
    while it runs are served when the outermost bracketed call ends. The
    method's object has C{core} (a L{Core}).

    @param answers: True for an engine operation: its result (or exception)
        becomes a Deferred's (a method may also return a Deferred, handed
        back as it is). False for an internal call: its result and
        exceptions pass through.
    """

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        core = self.core
        core.busy += 1
        try:
            result = method(self, *args, **kwargs)
        except Exception:
            if not answers:
                raise
            result = Failure()
        finally:
            core.busy -= 1
            if not core.busy and core.pending:
                core.flush()
        if not answers:
            return result
        if isinstance(result, Deferred):
            return result
        if isinstance(result, Failure):
            return fail(result)
        return succeed(result)

    return run


def operation(method):
    """Make a method an engine operation (see L{bracket})."""
    return bracket(method, True)


def checkText(value, what):
    if not isinstance(value, str):
        raise InvalidArgument(f"The {what} must be a string.")
    return value


class Core:
    """
    The state shared by an engine's resources (engine-internal: each
    resource holds it as C{core}).

    @ivar clock: the L{IReactorTime}.
    @ivar pipeDepth: how many messages a pipe holds before it drops its oldest.
    @ivar feedBacklog: a rotator or service feed's default backlog limit.
    @ivar backlogAge: such a feed's default backlog age limit, or None.
    @ivar registry: every hash of the engine to its resource (a pending
        asynclet's hash maps to its pipe).
    @ivar drawHash: draws a new hash.
    @ivar pending: pipes and fans to serve (C{fire()}) when the operation
        under way ends; each has a C{queued} flag, True while it is listed.
    @ivar busy: how many bracketed calls are under way.
    @ivar now: the time of the flush under way (None outside one).
    @ivar stats: the engine's counters (see L{MemoryEngine.stats}).
    @ivar pipeDrops: warnings about what pipe depths drop.
    @ivar feedDrops: warnings about what feed backlogs drop.
    @ivar staging: the engine's L{rocketd.engine.memory._staging.Staging}
        (set by the engine).
    @ivar log: the engine's log.
    """

    def __init__(self, log, clock, pipeDepth: int, feedBacklog: int, backlogAge: Optional[float]):
        self.log = log
        self.clock = clock
        self.pipeDepth = pipeDepth
        self.feedBacklog = feedBacklog
        self.backlogAge = backlogAge
        self.registry: Dict[str, object] = {}
        self.drawHash = HashSource().draw
        self.pending = deque()
        self.busy = 0
        self._flushing = False
        self.now: Optional[float] = None
        self.stats = {"published": 0, "delivered": 0, "dropped": 0}
        self.staging = None
        # What the limits drop is warned about at most once a minute per
        # pipe or feed, with the count since the previous line.
        self.pipeDrops = DropWarnings(
            self.log,
            clock,
            "Pipe {pipe} of domain {domain} dropped messages at its depth limit: "
            "{count} since the last warning, {dropped} since it was created",
        )
        self.feedDrops = DropWarnings(
            self.log,
            clock,
            "Feed {feed} of domain {domain} dropped messages from its backlog: "
            "{count} since the last warning, {dropped} since it was created",
        )

    def notify(self, target):
        """Serve a pipe's waiters and consumer (or a fan's listeners) when the current operation ends."""
        if not target.queued:
            target.queued = True
            self.pending.append(target)

    def flush(self):
        """Serve the pending pipes and fans (the bracket calls this when the outermost call ends)."""
        if self._flushing:
            return
        self._flushing = True
        # One reading of the clock serves every pipe served by this flush.
        self.now = self.clock.seconds()
        try:
            pending = self.pending
            while pending:
                target = pending.popleft()
                target.queued = False
                target.fire()
        finally:
            self._flushing = False
            self.now = None

    def countDropped(self, n):
        self.stats["dropped"] += n

    def stop(self):
        """Cancel the engine-wide timers."""
        self.staging.stop()
        self.pipeDrops.stop()
        self.feedDrops.stop()


class Resource:
    """Timestamps and version of a mutable resource."""

    def touch(self, now=None):
        self.modified = self.core.clock.seconds() if now is None else now
        self.version += 1
