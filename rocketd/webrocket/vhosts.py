"""
The WebRocket vhost registry: vhost paths and their access tokens.

A vhost is a path (C{/moon}, C{/apps/chat}) and an engine domain (the path
without its leading slash). Vhosts come from two places: the config file
(I{declared}, with a fixed token, read-only) and the state directory's
C{vhosts.json} (created, re-tokened and deleted at run time). The file is
rewritten atomically on every change, so that a crash mid-write leaves
either the old list or the new one, never a torn one.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from rocketd.errors import Conflict, Forbidden, InvalidArgument, InvalidName, NoSuchResource
from rocketd.http.paths import RESERVED_PREFIXES, RESERVED_SEGMENTS

#: A vhost path: one or more segments of C{[A-Za-z0-9_-]}; the reserved
#: first segments and words are L{rocketd.http.paths}'.
VHOST_PATH = re.compile(r"/[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
#: The longest vhost path accepted.
MAX_PATH_LENGTH = 512
#: An access token: 40 lowercase hex digits.
TOKEN = re.compile(r"[0-9a-f]{40}")

#: The observer events (see L{VhostRegistry.addObserver}).
ADDED, DELETED, TOKEN_CHANGED = "added", "deleted", "token-changed"

_FORMAT_VERSION = 1


def newToken() -> str:
    """@return: a fresh random access token (160 bits, 40 lowercase hex)."""
    return secrets.token_hex(20)


def checkPath(path: str) -> None:
    """
    Check a vhost path against the naming rules.

    @raise InvalidName: with a sentence saying what is wrong.
    """
    if not isinstance(path, str) or not VHOST_PATH.fullmatch(path) or len(path) > MAX_PATH_LENGTH:
        raise InvalidName(
            f"{path!r} is not a valid vhost path: it must look like /name or /name/name, "
            f"with names of letters, digits, '_' and '-' (at most {MAX_PATH_LENGTH} characters)."
        )
    segments = path[1:].split("/")
    if segments[0].lower() in RESERVED_PREFIXES:
        raise InvalidName(f"The vhost path {path} is reserved: /{segments[0]} belongs to the server.")
    for segment in segments:
        if segment.lower() in RESERVED_SEGMENTS:
            raise InvalidName(
                f"The vhost path {path} is not allowed: '{segment}' is a word of the backend API "
                "and can't be a vhost path segment."
            )


@dataclass(frozen=True)
class Vhost:
    """
    One vhost.

    @ivar path: the vhost path, e.g. C{"/apps/chat"}.
    @ivar token: the access token, 40 lowercase hex digits.
    @ivar declared: True if it comes from the config file (then it can't be
        deleted or re-tokened at run time).
    """

    path: str
    token: str
    declared: bool = False

    @property
    def domain(self) -> str:
        """The engine domain's name: the path without the leading slash."""
        return self.path[1:]


class VhostRegistry:
    """
    The set of vhosts, persisted in a JSON file.

    @param engine: the L{rocketd.interfaces.IEngine} whose domains back the vhosts.
    @param path: the L{FilePath} of the registry file (C{STATE_DIR/vhosts.json}).
    @param clock: the clock (kept for symmetry with the other components).
    @param declared: vhost path to token, from the config file.
    """

    log = Logger()

    def __init__(self, engine, path: FilePath, clock, declared: Mapping[str, str] = {}):
        self._engine = engine
        self._path = path
        self._clock = clock
        self._declared = dict(declared)
        self._vhosts: Dict[str, Vhost] = {}
        self._observers: List[Callable[[str, Vhost], object]] = []

    # -- observers --------------------------------------------------------

    def addObserver(self, observer: Callable[[str, Vhost], object]) -> None:
        """
        Call C{observer(event, vhost)} after every change, synchronously;
        C{event} is L{ADDED}, L{DELETED} (called before the vhost's domain
        is deleted) or L{TOKEN_CHANGED} (with the new L{Vhost}).
        """
        self._observers.append(observer)

    def _notify(self, event: str, vhost: Vhost) -> None:
        for observer in list(self._observers):
            try:
                observer(event, vhost)
            except Exception:
                self.log.failure("vhost observer failed on {event} {vhost}", event=event, vhost=vhost.path)

    # -- reading ----------------------------------------------------------

    def load(self) -> Deferred:
        """
        Read the registry file (a missing file means no vhosts), add the
        declared vhosts (which win over a file entry with the same path)
        and create every vhost's engine domain.

        @return: Deferred firing with the list of L{Vhost}s; fails with
            L{InvalidName} or L{InvalidArgument} for a bad declared vhost,
            and with L{ValueError} for an unreadable registry file (the
            daemon must not start and then overwrite it).
        """
        try:
            vhosts = {}
            for path, token in self._readFile().items():
                vhosts[path] = Vhost(path, token, declared=False)
            for path, token in self._declared.items():
                checkPath(path)
                if not isinstance(token, str) or not TOKEN.fullmatch(token):
                    raise InvalidArgument(
                        f"The token of the declared vhost {path} must be 40 lowercase hex digits."
                    )
                vhosts[path] = Vhost(path, token, declared=True)
        except Exception:
            return fail()
        self._vhosts = vhosts
        return self._createDomains()

    @inlineCallbacks
    def _createDomains(self):
        for vhost in self.list():
            yield self._engine.createDomain(vhost.domain, f"WebRocket vhost {vhost.path}")
        self.log.info("{count} vhosts loaded", count=len(self._vhosts))
        return self.list()

    def _readFile(self) -> Dict[str, str]:
        try:
            raw = self._path.getContent()
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(raw)
            entries = document["vhosts"]
            if not isinstance(entries, dict):
                raise TypeError("'vhosts' is not an object")
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"The vhost registry {self._path.path} is not readable: {e}") from e
        result = {}
        for path, token in entries.items():
            try:
                checkPath(path)
            except InvalidName as e:
                raise ValueError(f"The vhost registry {self._path.path}: {e.message}") from e
            if not isinstance(token, str) or not TOKEN.fullmatch(token):
                raise ValueError(f"The vhost registry {self._path.path}: the token of {path} is malformed.")
            result[path] = token
        return result

    def resolve(self, vhost) -> Vhost:
        """
        @param vhost: a L{Vhost} or a vhost path.
        @return: the L{Vhost}.
        @raise NoSuchResource: if no vhost has that path.
        """
        if isinstance(vhost, Vhost):
            return vhost
        found = self._vhosts.get(vhost)
        if found is None:
            raise NoSuchResource(f"There is no vhost {vhost}.")
        return found

    def get(self, path: str) -> Optional[Vhost]:
        """@return: the L{Vhost} with that path, or None."""
        return self._vhosts.get(path)

    def list(self) -> List[Vhost]:
        """@return: every L{Vhost}, sorted by path."""
        return [self._vhosts[path] for path in sorted(self._vhosts)]

    def checkToken(self, path: str, token: str) -> bool:
        """
        Whether C{token} is the access token of the vhost at C{path}, in
        constant time (for tokens of the right length). An unknown vhost
        answers False.
        """
        vhost = self._vhosts.get(path)
        expected = vhost.token if vhost is not None else newToken()
        if isinstance(token, bytes):
            given = token
        elif isinstance(token, str):
            given = token.encode("utf-8", "surrogatepass")
        else:
            return False
        return hmac.compare_digest(expected.encode("ascii"), given) and vhost is not None

    # -- changing ---------------------------------------------------------

    def add(self, path: str) -> Deferred:
        """
        Create a vhost with a new random token.

        @return: Deferred firing with the new L{Vhost}; fails with
            L{InvalidName} for a bad or reserved path and L{Conflict} if a
            vhost with that path exists.
        """
        try:
            checkPath(path)
            if path in self._vhosts:
                raise Conflict(f"The vhost {path} exists already.")
            vhost = Vhost(path, newToken(), declared=False)
            self._commit({**self._vhosts, path: vhost})
        except Exception:
            return fail()
        d = self._engine.createDomain(vhost.domain, f"WebRocket vhost {vhost.path}")
        d.addCallback(lambda _: self._notify(ADDED, vhost))
        d.addCallback(lambda _: vhost)
        return d

    def delete(self, path: str) -> Deferred:
        """
        Delete a vhost and its engine domain (its channels and workers).

        @return: Deferred firing with None; fails with L{NoSuchResource} if
            unknown and L{Forbidden} for a declared vhost.
        """
        try:
            vhost = self._writable(path)
            remaining = dict(self._vhosts)
            del remaining[path]
            self._commit(remaining)
        except Exception:
            return fail()
        self._notify(DELETED, vhost)
        d = self._engine.deleteDomain(vhost.domain)
        d.addCallback(lambda _: None)
        return d

    def regenerateToken(self, path: str) -> Deferred:
        """
        Give a vhost a new random token; the old one stops working at once.

        @return: Deferred firing with the new L{Vhost}; fails with
            L{NoSuchResource} if unknown and L{Forbidden} for a declared vhost.
        """
        try:
            self._writable(path)
            changed = Vhost(path, newToken(), declared=False)
            self._commit({**self._vhosts, path: changed})
        except Exception:
            return fail()
        self._notify(TOKEN_CHANGED, changed)
        return succeed(changed)

    def _writable(self, path: str) -> Vhost:
        vhost = self._vhosts.get(path)
        if vhost is None:
            raise NoSuchResource(f"There is no vhost {path}.")
        if vhost.declared:
            raise Forbidden(f"The vhost {path} is declared in the config file; change it there.")
        return vhost

    def _commit(self, vhosts: Dict[str, Vhost]) -> None:
        """Write the new list to disk, then make it the current one."""
        entries = {v.path: v.token for v in sorted(vhosts.values(), key=lambda v: v.path) if not v.declared}
        data = json.dumps({"version": _FORMAT_VERSION, "vhosts": entries}, indent=2).encode("utf-8") + b"\n"
        writeAtomically(self._path, data)
        self._vhosts = vhosts


def writeAtomically(path: FilePath, data: bytes, mode: int = 0o600) -> None:
    """
    Replace the file at C{path} with C{data} so that a crash at any moment
    leaves either the old content or the new one: write a temporary file in
    the same directory, flush and fsync it, rename it over C{path}, fsync
    the directory.

    @param mode: the new file's permission bits.
    """
    directory = path.parent()
    directory.makedirs(ignoreExistingDirectory=True)
    temporary = path.siblingExtension(".tmp")
    fd = os.open(temporary.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary.path, path.path)
    dirfd = os.open(directory.path, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
