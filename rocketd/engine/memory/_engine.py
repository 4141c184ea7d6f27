"""
L{MemoryEngine}, the L{IEngine} of the embedded engine: its settings, its
domains by name, and the lookup of any resource by hash (the registry in
its L{Core} names feeds, pipes, joins, held messages and staged contents;
a held message's content and a pipe's pending asynclet are made on
lookup).
"""

from __future__ import annotations

import re
from typing import Dict, Optional

from twisted.logger import Logger
from zope.interface import implementer

from rocketd.engine.memory._core import Core, checkText, operation
from rocketd.engine.memory._domain import Domain
from rocketd.engine.memory._held import Asynclet, HeldContent, HeldMessage
from rocketd.engine.memory._pipe import Pipe
from rocketd.engine.memory._staging import Staging
from rocketd.errors import InvalidName, NoSuchResource
from rocketd.interfaces import IEngine

_DOMAIN_NAME = re.compile(r"[A-Za-z0-9._/-]{1,256}\Z")


@implementer(IEngine)
class MemoryEngine:
    """
    The embedded engine.

    @ivar stats: counters since start: C{published} (messages published to
        feeds by clients), C{delivered} (messages put in pipes), C{dropped}
        (messages dropped by pipe depth or feed backlog limits).

    Engine-internal: C{core}, the L{Core} its resources share.
    """

    def __init__(
        self,
        clock,
        pipeDepth: int = 10000,
        feedBacklog: int = 10000,
        backlogAge: Optional[float] = None,
        stageTTL: float = 3600.0,
        stageCount: int = 1000,
        stageBytes: int = 16777216,
    ):
        """
        @param clock: an L{IReactorTime}: timestamps, backlog and staged
            content expiry.
        @param pipeDepth: how many messages a pipe holds before it drops
            its oldest.
        @param feedBacklog: how many messages a rotator or service feed
            keeps for a join by default.
        @param backlogAge: how many seconds such a message may wait by
            default (None: no limit).
        @param stageTTL: how many seconds a staged content that no message
            has claimed is kept.
        @param stageCount: how many such contents a feed keeps at most.
        @param stageBytes: how many bytes of such contents a feed keeps at
            most.
        """
        if pipeDepth < 1:
            raise ValueError("pipeDepth must be at least 1")
        if feedBacklog < 0:
            raise ValueError("feedBacklog must not be negative")
        if not stageTTL > 0:
            raise ValueError("stageTTL must be greater than zero")
        if stageCount < 1 or stageBytes < 1:
            raise ValueError("stageCount and stageBytes must be at least 1")
        # The log keeps the namespace it had before the engine was a package.
        self.log = Logger(namespace="rocketd.engine.memory.MemoryEngine", source=self)
        core = self.core = Core(self.log, clock, pipeDepth, feedBacklog, backlogAge)
        core.staging = Staging(core, stageTTL, stageCount, stageBytes)
        self.stats = core.stats
        self._domains: Dict[str, Domain] = {}

    # -- IEngine --

    @operation
    def start(self):
        """Nothing to connect or replay: ready at once."""
        return None

    @operation
    def createDomain(self, name, title=""):
        if not isinstance(name, str) or not _DOMAIN_NAME.match(name):
            raise InvalidName("A domain name is 1 to 256 characters of letters, digits, '.', '_', '-' and '/'.")
        checkText(title, "title")
        domain = self._domains.get(name)
        if domain is None:
            domain = self._domains[name] = Domain(self.core, name, title)
            self.log.info("Domain {domain} created", domain=name)
        return domain

    @operation
    def getDomain(self, name):
        domain = self._domains.get(name) if isinstance(name, str) else None
        if domain is None:
            raise NoSuchResource(f"There is no domain {name!r}.")
        return domain

    @operation
    def listDomains(self):
        return list(self._domains.values())

    @operation
    def deleteDomain(self, name):
        domain = self._domains.pop(name, None) if isinstance(name, str) else None
        if domain is not None:
            domain.destroy()
            self.log.info("Domain {domain} deleted", domain=name)

    @operation
    def lookup(self, hash):
        if not isinstance(hash, str):
            raise NoSuchResource("There is no such resource.")
        registry = self.core.registry
        found = registry.get(hash)
        if found is not None:
            if type(found) is Pipe and hash != found.hash:
                # The registry names a pipe's pending asynclet by the pipe.
                return Asynclet(hash, found, found.asyncletSince)
            return found
        base, dot, index = hash.rpartition(".")
        if dot and index.isascii() and index.isdigit() and str(int(index)) == index:
            held = registry.get(base)
            if type(held) is HeldMessage and held.holds(int(index)):
                return HeldContent(held, int(index))
        raise NoSuchResource("There is no such resource.")

    @operation
    def stop(self):
        self.core.stop()
        for domain in list(self._domains.values()):
            domain.stop()
