"""
The embedded engine: every domain, feed, pipe and join in this process's
memory. L{MemoryEngine} is the one public name; the modules of the package
each own one resource:

 - C{_engine}: L{MemoryEngine}, its domains and the lookup by hash;
 - C{_core}: the state the resources share (L{Core}) and the operation
   bracket;
 - C{_domain}: a domain, its named feeds, its lifecycle events;
 - C{_feed}: a feed, its routing, its listeners;
 - C{_routers}: the join indexes of the copying feed types;
 - C{_rotation}: a rotator or service feed's round-robin and backlog;
 - C{_join}: a join, its checks and its matching data;
 - C{_pipe}: a pipe, its held messages, waiters and consumer;
 - C{_held}: a held message, its contents, the asynclet;
 - C{_staging}: staged contents and their expiry.

Every operation answers at once with an already-fired Deferred; so does
L{MemoryEngine.start}, which has nothing to prepare. Routing never runs
application code (a join's predicate is an
L{rocketd.engine.predicates.AddressMatches}, applied as its compiled
expression): waiters, consumers and listeners of what a publish reached
are notified when the whole operation has routed, so they see a
consistent engine and may call any operation.

Decisions where the profile leaves room:
 - A rotator or service join's address C{*} or C{#} takes every message;
   any other address is a topic pattern matched against the message's.
   Such a join's headers are kept but not matched.
 - A message reaches a pipe at most once per publish, however many of the
   pipe's joins onto that feed match it.
 - A published message is the one object every pipe and listener gets
   (L{Message.feed} is set on it, not on a copy).
 - An ondemand pipe takes at most one message from rotator and service
   feeds; messages addressed to the pipe itself (its default join) are
   held like a fifo pipe's.
 - Lifecycle events of a join go to the system feeds of the pipe's domain,
   and of the feed's domain when it is another; their C{name} header is the
   join's address, C{feed} and C{pipe} headers carry the hashes.
 - A consumer that raises is logged and its message counts as handed.
 - L{Pipe.consume} hands the held messages before its Deferred fires.
 - A content staged on a feed and claimed by no message is kept at most
   C{stageTTL} seconds (one timer for the engine, due when the oldest one
   expires); a feed keeps at most C{stageCount} of them and
   C{stageBytes} bytes of them, and staging beyond that fails with
   L{LimitReached}.
"""

from rocketd.engine.memory._engine import MemoryEngine

__all__ = ["MemoryEngine"]
