"""
The admin HTTP API: vhosts, their tokens, channels and workers.

It is served on the admin listener (by default on the loopback interface
only) and every request must carry the secret of the cookie file
C{STATE_DIR/admin.cookie} in the C{X-Rocketd-Cookie} header. Bodies are
JSON; errors are C{{"error": "sentence"}} with 400, 401, 403, 404, 405 or
409 (engine errors get the status of L{rocketd.http.errors}). The routes
are a Klein app with C{async def} handlers, as the RestMS face's.

Routes (a vhost path may have several segments, C{/apps/chat}):

    - C{GET /vhosts}: C{{"vhosts": [vhost, ...]}}
    - C{POST /vhosts/{path}}: 201, the new vhost with its token
    - C{GET /vhosts/{path}}: the vhost, with its channel count
    - C{DELETE /vhosts/{path}}: the vhost, its channels and its workers
    - C{PUT /vhosts/{path}/token}: a new token
    - C{GET /vhosts/{path}/channels}: C{{"channels": [channel, ...]}}
    - C{DELETE /vhosts/{path}/channels}: closes every channel
    - C{GET|POST|DELETE /vhosts/{path}/channels/{name}}: one channel
    - C{GET /vhosts/{path}/workers}: C{{"workers": [worker, ...]}}

A vhost is C{{"path", "token", "declared"}}, a channel
C{{"name", "subscribers"}}, a worker C{{"id", "filter", "connected"}}
(C{connected} in POSIX seconds).

Since vhost paths have any number of segments, C{/vhosts/a/channels/b}
names channel C{b} of vhost C{/a} when C{/a} exists; the vhost that matches
the most segments wins. Creating a vhost whose path has one of the segments
of L{rocketd.http.paths.RESERVED_SEGMENTS} is refused, so that no vhost
path can be read two ways.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from typing import List, Optional, Tuple

from klein import Klein
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from rocketd.errors import EngineError, InvalidName, NoSuchResource
from rocketd.http.errors import HTTPError, answerOf
from rocketd.http.paths import ADMIN_WORDS, reservedSegments

#: The request header that carries the admin cookie.
COOKIE_HEADER = b"X-Rocketd-Cookie"
#: Random bytes in a new cookie (written as twice as many hex digits).
COOKIE_BYTES = 32
#: An existing cookie shorter than this is not trusted and is replaced.
MIN_COOKIE_LENGTH = 32

_log = Logger()


def _readCookie(path: FilePath) -> Optional[str]:
    """
    @return: the cookie in C{path}, or None if the file holds no usable
        cookie (empty or too short: a creation cut short).
    @raise FileNotFoundError: if there is no such file.
    """
    with open(path.path, "rb") as f:
        text = f.read().decode("ascii", "replace").strip()
    if len(text) < MIN_COOKIE_LENGTH or any(c.isspace() for c in text):
        return None
    return text


def _writeNew(path: str, cookie: str) -> None:
    """
    Create C{path} (it must not exist) with mode 0600 and the cookie in it.

    @raise FileExistsError: if it exists.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, (cookie + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def ensureCookie(path: FilePath) -> str:
    """
    Give the admin cookie: read it from C{path}, or create that file (mode
    0600, never readable by others, not even for an instant) with
    L{COOKIE_BYTES} random bytes in hex.

    A file that holds no usable cookie (empty or shorter than
    L{MIN_COOKIE_LENGTH}, as a creation cut short would leave) is replaced
    atomically. An existing file that others may read is made private.

    @param path: C{STATE_DIR/admin.cookie}; its directory must exist.
    @return: the cookie.
    """
    try:
        cookie = _readCookie(path)
    except FileNotFoundError:
        cookie = secrets.token_hex(COOKIE_BYTES)
        try:
            _writeNew(path.path, cookie)
        except FileExistsError:
            # Another process created it between our read and our create.
            return ensureCookie(path)
        _log.info("Created the admin cookie file {path}", path=path.path)
        return cookie
    if cookie is None:
        _log.warn("The admin cookie file {path} holds no usable cookie; replacing it", path=path.path)
        cookie = secrets.token_hex(COOKIE_BYTES)
        temporary = path.sibling(path.basename() + ".new")
        if temporary.exists():
            temporary.remove()
        _writeNew(temporary.path, cookie)
        os.replace(temporary.path, path.path)
        return cookie
    mode = stat.S_IMODE(os.stat(path.path).st_mode)
    if mode & 0o077:
        _log.warn(
            "The admin cookie file {path} was readable by others (mode {mode:o}); made it 0600",
            path=path.path,
            mode=mode,
        )
        os.chmod(path.path, 0o600)
    return cookie


def _jsonBody(request, status: int, body) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    # Tokens travel in these bodies: no cache may keep them.
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body).encode("utf-8")


def _errorBody(request, status: int, message: str) -> bytes:
    return _jsonBody(request, status, {"error": message})


def _methodNotAllowed(allowed: Tuple[str, ...]) -> HTTPError:
    """The 405 of an admin resource that does not answer the method."""
    return HTTPError(405, "That method is not allowed here.", [(b"Allow", ", ".join(allowed).encode("ascii"))])


#: What each kind of admin resource answers to.
_ALLOWED = {
    "vhost": ("GET", "DELETE"),
    "token": ("PUT",),
    "channels": ("GET", "DELETE"),
    "channel": ("GET", "POST", "DELETE"),
    "workers": ("GET",),
}


def _parseRemainder(segments: List[str]) -> Optional[Tuple[str, Optional[str]]]:
    """
    Read what follows a vhost path.

    @return: C{(kind, channel name or None)}, or None if that is no admin
        resource.
    """
    if not segments:
        return ("vhost", None)
    if len(segments) == 1 and segments[0] in ADMIN_WORDS:
        return (segments[0], None)
    if len(segments) == 2 and segments[0] == "channels":
        return ("channel", segments[1])
    return None


def _vhostJSON(vhost) -> dict:
    return {"path": vhost.path, "token": vhost.token, "declared": vhost.declared}


class _CookieGuard(Resource):
    """
    Answers 401 to any request without the right cookie, and hands the
    others to the admin application.
    """

    isLeaf = True

    def __init__(self, cookie: str, app: Resource):
        Resource.__init__(self)
        self._cookie = cookie.encode("ascii")
        self._app = app

    def render(self, request):
        given = request.getHeader(COOKIE_HEADER)
        if given is None:
            message = "The admin API needs the admin cookie in the X-Rocketd-Cookie header."
        elif not hmac.compare_digest(given, self._cookie):
            message = "The admin cookie is wrong."
        else:
            return self._app.render(request)
        request.setHeader(b"WWW-Authenticate", b'Rocketd-Cookie realm="rocketd admin"')
        return _errorBody(request, 401, message)


class AdminApp:
    """
    The admin HTTP API.

    @param vhosts: the L{rocketd.webrocket.vhosts.VhostRegistry}.
    @param channels: the L{rocketd.webrocket.channels.Channels}.
    @param workers: the L{rocketd.webrocket.workers.WorkerPool} (its
        C{listWorkers}).
    @param slowClientsClosed: C{callable(vhost path) -> int}: how many
        WebSocket clients of the vhost were closed because they read too
        slowly (L{rocketd.webrocket.frontend.Frontend.slowClientsClosed}).
    @param cookie: the admin secret (from L{ensureCookie}).
    """

    app = Klein()
    log = Logger()

    def __init__(self, vhosts, channels, workers, slowClientsClosed, cookie: str):
        if not cookie:
            raise ValueError("the admin cookie must not be empty")
        self._vhosts = vhosts
        self._channels = channels
        self._workers = workers
        self._slowClientsClosed = slowClientsClosed
        self._cookie = cookie

    def resource(self) -> Resource:
        """@return: the resource to serve at the root of the admin listener."""
        return _CookieGuard(self._cookie, self.app.resource())

    # Resolution of /vhosts/... paths

    def _resolve(self, segments: List[str]):
        """
        Find the vhost and the part of it that C{segments} name, the vhost
        with the most segments first.

        @return: C{(vhost, kind, channel name or None)}, or None.
        """
        for end in range(len(segments), 0, -1):
            vhost = self._vhosts.get("/" + "/".join(segments[:end]))
            if vhost is None:
                continue
            parsed = _parseRemainder(segments[end:])
            if parsed is not None:
                return (vhost,) + parsed
        return None

    @staticmethod
    def _missing(segments: List[str]) -> NoSuchResource:
        """The 404 for a path that names no existing vhost."""
        if len(segments) > 1 and segments[-1] in ADMIN_WORDS:
            segments = segments[:-1]
        elif len(segments) > 2 and segments[-2] == "channels":
            segments = segments[:-2]
        return NoSuchResource("There is no vhost /%s." % ("/".join(segments),))

    # Routes

    @app.route("/vhosts", methods=["GET"])
    async def listVhosts(self, request):
        return _jsonBody(request, 200, {"vhosts": [_vhostJSON(v) for v in self._vhosts.list()]})

    @app.route("/vhosts/<path:rest>", methods=["GET", "POST", "PUT", "DELETE"])
    async def vhostResource(self, request, rest):
        """
        Every C{/vhosts/{path}[/...]} request.

        @return: the JSON body (the status set); fails with an
            L{EngineError} or an L{HTTPError}.
        """
        method = request.method.decode("ascii")
        if method == "HEAD":
            method = "GET"
        segments = rest.split("/")
        if "" in segments:
            raise NoSuchResource("There is no such admin resource.")
        resolved = self._resolve(segments)
        if method == "POST" and (resolved is None or resolved[1] != "channel"):
            return await self._addVhost(request, segments)
        if resolved is None:
            raise self._missing(segments)
        vhost, kind, name = resolved
        if method not in _ALLOWED[kind]:
            raise _methodNotAllowed(_ALLOWED[kind])
        return await getattr(self, "_%s_%s" % (method.lower(), kind))(request, vhost, name)

    async def _addVhost(self, request, segments):
        if len(segments) > 2 and segments[-2] == "channels":
            raise self._missing(segments)
        reserved = reservedSegments(segments)
        if reserved:
            raise InvalidName(
                "A vhost path may not have a segment named %s." % (" or ".join(repr(r) for r in reserved),)
            )
        vhost = await self._vhosts.add("/" + "/".join(segments))
        self.log.info("Admin API: created vhost {path}", path=vhost.path)
        request.setHeader(b"Location", ("/vhosts" + vhost.path).encode("utf-8"))
        return _jsonBody(request, 201, _vhostJSON(vhost))

    async def _get_vhost(self, request, vhost, name):
        channels = await self._channels.listChannels(vhost)
        body = _vhostJSON(vhost)
        body["channels"] = len(channels)
        body["slowClientsClosed"] = self._slowClientsClosed(vhost.path)
        return _jsonBody(request, 200, body)

    async def _delete_vhost(self, request, vhost, name):
        await self._vhosts.delete(vhost.path)
        self.log.info("Admin API: deleted vhost {path}", path=vhost.path)
        return _jsonBody(request, 200, {"path": vhost.path, "deleted": True})

    async def _put_token(self, request, vhost, name):
        vhost = await self._vhosts.regenerateToken(vhost.path)
        self.log.info("Admin API: new token for vhost {path}", path=vhost.path)
        return _jsonBody(request, 200, _vhostJSON(vhost))

    async def _get_channels(self, request, vhost, name):
        channels = await self._channels.listChannels(vhost)
        return _jsonBody(request, 200, {"channels": [_channelJSON(c) for c in channels]})

    async def _delete_channels(self, request, vhost, name):
        channels = await self._channels.listChannels(vhost)
        closed = []
        for channel in channels:
            try:
                await self._channels.closeChannel(vhost, channel["name"])
            except NoSuchResource:
                continue  # closed meanwhile
            closed.append(channel["name"])
        self.log.info("Admin API: closed every channel of vhost {path}", path=vhost.path)
        return _jsonBody(request, 200, {"deleted": closed})

    async def _findChannel(self, vhost, name):
        for channel in (await self._channels.listChannels(vhost)):
            if channel["name"] == name:
                return channel
        return None

    async def _get_channel(self, request, vhost, name):
        channel = await self._findChannel(vhost, name)
        if channel is None:
            raise NoSuchResource("There is no channel %s in vhost %s." % (name, vhost.path))
        return _jsonBody(request, 200, _channelJSON(channel))

    async def _post_channel(self, request, vhost, name):
        existing = await self._findChannel(vhost, name)
        await self._channels.openChannel(vhost, name)
        if existing is not None:
            return _jsonBody(request, 200, _channelJSON(existing))
        self.log.info("Admin API: opened channel {name} in vhost {path}", name=name, path=vhost.path)
        request.setHeader(b"Location", ("/vhosts%s/channels/%s" % (vhost.path, name)).encode("utf-8"))
        return _jsonBody(request, 201, {"name": name, "subscribers": 0})

    async def _delete_channel(self, request, vhost, name):
        await self._channels.closeChannel(vhost, name)
        self.log.info("Admin API: closed channel {name} in vhost {path}", name=name, path=vhost.path)
        return _jsonBody(request, 200, {"name": name, "deleted": True})

    async def _get_workers(self, request, vhost, name):
        workers = self._workers.listWorkers(vhost)
        return _jsonBody(
            request,
            200,
            {
                "workers": [
                    {"id": w["id"], "filter": w["filter"], "connected": w["connected"]}
                    for w in workers
                ]
            },
        )

    # Errors

    @app.handle_errors(EngineError, HTTPError)
    def _knownError(self, request, failure):
        answer = answerOf(failure.value)
        if answer is None:
            self.log.failure("Admin API: unexpected engine error", failure)
            return _errorBody(request, 500, failure.value.message)
        status, sentence, headers = answer
        for name, value in headers:
            request.setHeader(name, value)
        return _errorBody(request, status, sentence)

    @app.handle_errors(HTTPException)
    def _httpError(self, request, failure):
        error = failure.value
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            request.setHeader(b"Allow", ", ".join(error.valid_methods).encode("ascii"))
        if error.code == 404:
            message = "There is no such admin resource."
        elif error.code == 405:
            message = "That method is not allowed here."
        else:
            message = error.description or error.name
        return _errorBody(request, error.code or 500, message)

    @app.handle_errors(Exception)
    def _unexpected(self, request, failure):
        self.log.failure("Admin API: request failed", failure)
        return _errorBody(request, 500, "The server failed to answer; see its log.")


def _channelJSON(channel) -> dict:
    return {"name": channel["name"], "subscribers": channel["subscribers"]}
