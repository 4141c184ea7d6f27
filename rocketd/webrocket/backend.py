"""
The WebRocket backend API: channels, fired events, browser tokens and the
workers' event stream, over HTTP on the main listener.

Request paths are C{/:vhost/...} where a vhost path has any number of
segments; no vhost segment can be one of the API's words (C{channels},
C{token}, C{events}: L{rocketd.http.paths.BACKEND_WORDS}), so the vhost is
everything before the first of them:

    /:vhost/channels                  GET list
    /:vhost/channels/:name            POST open, DELETE close, GET one
    /:vhost/channels/:name/events     POST fire an event
    /:vhost/token                     GET a single-use browser token
    /:vhost/events                    GET the workers' event stream (SSE),
                                      POST an event to the workers (extension)
    /:vhost                           the WebSocket frontend (upgrade requests)

Checks come in this order: unknown vhost (404), credentials (401), then the
request (405, 400, 404). Every error has a JSON body C{{"error": "..."}},
with the status L{rocketd.http.errors} gives an engine error. The routes
are the table L{_ROUTES}; the hot one (firing an event) is dispatched
before the table is read.
"""

from __future__ import annotations

import json
from typing import Optional
from urllib.parse import unquote

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from rocketd.errors import EngineError, InvalidArgument, InvalidName
from rocketd.http.errors import HTTPError, answerOf
from rocketd.http.exchange import Exchange, HTTPResponse, writeResponse
from rocketd.http.paths import BACKEND_WORDS
from rocketd.http.sse import Heartbeat, SSEStream
from rocketd.http.strictjson import rejectConstant
from rocketd.webrocket.channels import checkChannelName
from rocketd.webrocket.tokens import anchoredPattern

#: The HTTP Basic user of the backend API.
BACKEND_USER = b"wr"
#: The realm announced with a 401.
REALM = b"rocketd"


#: One decoder for every request body (json.loads with an option builds one per call).
_DECODER = json.JSONDecoder(parse_constant=rejectConstant)


def _readTrigger(body: bytes, shape: str) -> dict:
    try:
        # JSON on the wire is UTF-8 (RFC 8259); anything else is not JSON here.
        document = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidArgument("The request body is not JSON.")
    if not isinstance(document, dict) or not isinstance(document.get("trigger"), dict):
        raise InvalidArgument(f"The request body must be {shape}.")
    trigger = document["trigger"]
    if not isinstance(trigger.get("event"), str) or not trigger["event"]:
        raise InvalidArgument("The trigger's 'event' must be a non-empty string.")
    if not isinstance(trigger.get("data", {}), dict):
        raise InvalidArgument("The trigger's 'data' must be an object.")
    return trigger


def parseTrigger(body: bytes):
    """
    Read a fire-event request body: C{{"trigger": {"event": E, "data": {...}}}}
    (C{data} may be left out: it is then C{{}}; other members are ignored).

    @return: C{(event, data)}.
    @raise InvalidArgument: with a sentence saying what is wrong.
    """
    trigger = _readTrigger(body, '{"trigger": {"event": "...", "data": {...}}}')
    return trigger["event"], trigger.get("data", {})


def parseWorkerTrigger(body: bytes):
    """
    Read the body of an event for the workers: C{{"trigger": {"event": E,
    "channel": C, "data": {...}}}} (C{channel} and C{data} may be left out).

    @return: C{(channel or None, event, data)}.
    @raise InvalidArgument: with a sentence saying what is wrong (an
        invalid channel name included).
    """
    trigger = _readTrigger(body, '{"trigger": {"event": "...", "channel": "...", "data": {...}}}')
    channel = trigger.get("channel")
    if channel is not None:
        try:
            checkChannelName(channel)
        except InvalidName as e:
            raise InvalidArgument(e.message)
    return channel, trigger["event"], trigger.get("data", {})


class BackendApp:
    """
    The WebRocket backend API over the parts it serves: the channels, the
    browser tokens and the worker pool, each built and shared by the
    composition root (L{rocketd.app}) with the WebSocket frontend and the
    admin API.

    @param vhosts: the L{rocketd.webrocket.vhosts.VhostRegistry}.
    @param channels: the L{rocketd.webrocket.channels.Channels}.
    @param tokens: the L{rocketd.webrocket.tokens.TokenStore} of browser tokens.
    @param workers: the L{rocketd.webrocket.workers.WorkerPool}.
    @param clock: an L{IReactorTime}.
    @param heartbeat: the L{Heartbeat} of the workers' event streams (shared
        with the other streams of C{clock}); by default one of this face's
        own, every 15 seconds.
    """

    log = Logger()

    def __init__(self, vhosts, channels, tokens, workers, clock, heartbeat: Optional[Heartbeat] = None):
        self.vhosts = vhosts
        self.channels = channels
        self.tokens = tokens
        self.workers = workers
        self.clock = clock
        self.heartbeat = heartbeat if heartbeat is not None else Heartbeat(clock, 15.0)

    def resource(self, websocket: Optional[Resource] = None) -> Resource:
        """
        The resource serving every backend API path (given the full request
        path).

        @param websocket: the resource that serves WebSocket upgrade
            requests made to a bare vhost path (the browsers' frontend).
        """
        return BackendResource(self, websocket)

    def issueToken(self, vhost, uid: str, channels: str) -> str:
        """
        @return: a new single-use browser token for the vhost (128 hex).
        @raise InvalidArgument: empty uid, invalid expression.
        @raise NoSuchResource: unknown vhost.
        """
        return self.tokens.issue(self.vhosts.resolve(vhost).path, uid, channels)


# -- HTTP ------------------------------------------------------------------------


def _splitPath(path: bytes):
    """
    @return: C{(vhostPath, rest)}: the vhost path (str) and the list of
        segments after it, or C{(None, None)} for a path that can't be one.
    """
    try:
        segments = [unquote(s, errors="strict") for s in path.decode("ascii").split("/")[1:]]
    except (UnicodeDecodeError, UnicodeEncodeError):
        return None, None
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()
    for i, segment in enumerate(segments):
        if segment in BACKEND_WORDS:
            return "/" + "/".join(segments[:i]), segments[i:]
    return "/" + "/".join(segments), []


def _queryArgument(request, name: bytes, default: str) -> str:
    values = request.args.get(name)
    if not values:
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"The {name.decode()} parameter is not UTF-8.")


def _isUpgrade(request) -> bool:
    """Whether a request asks to become a WebSocket."""
    upgrade = request.getHeader(b"upgrade")
    return upgrade is not None and upgrade.strip().lower() == b"websocket"


#: Stands for the channel name in a route's shape.
_CHANNEL = object()

#: The routes after a vhost path: the shape of the segments (a channel name
#: is L{_CHANNEL}) to the methods allowed, each with its handler's name, in
#: the order the C{Allow} header of a 405 lists them. The hot route (POST
#: .../channels/NAME/events) is also dispatched before this table is read.
_ROUTES = {
    ("channels",): {b"GET": "_listChannels"},
    ("channels", _CHANNEL): {b"GET": "_getChannel", b"POST": "_openChannel", b"DELETE": "_closeChannel"},
    ("channels", _CHANNEL, "events"): {b"POST": "_fire"},
    ("token",): {b"GET": "_token"},
    ("events",): {b"GET": "_events", b"POST": "_triggerWorkers"},
}


def _shape(rest):
    """The key of L{_ROUTES} for the segments after a vhost path."""
    if len(rest) >= 2 and rest[0] == "channels":
        return ("channels", _CHANNEL, *rest[2:])
    return tuple(rest)


def _responseOf(result) -> HTTPResponse:
    """The response value of a route's C{(code, jsonBody, headers)}."""
    code, body, headers = result
    data = json.dumps(body).encode("utf-8") if body else b"{}"
    headers = list(headers)
    headers.append((b"Content-Type", b"application/json"))
    headers.append((b"Content-Length", b"%d" % (len(data),)))
    return HTTPResponse(code, headers, data)


class BackendResource(Resource):
    """
    The backend API's HTTP resource: a leaf that routes on the full path,
    with the route table L{_ROUTES} (see C{docs/architecture.md} for why
    this is not a Klein app).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, app: BackendApp, websocket: Optional[Resource] = None):
        Resource.__init__(self)
        self._app = app
        self._channels = app.channels
        self._websocket = websocket

    def render(self, request):
        if self._websocket is not None and _isUpgrade(request):
            vhostPath, rest = _splitPath(request.path)
            if rest == [] and self._app.vhosts.get(vhostPath) is not None:
                return self._websocket.render(request)
        if self.hotRoute(request.method, request.path, request.requestHeaders) is not None:
            # The hot route, served as the front door serves it.
            d = self.serveValue(Exchange.fromRequest(request))
            d.addCallback(lambda response: writeResponse(request, response))
            d.addErrback(request.processingFailed)
            return NOT_DONE_YET
        self._handle(request)
        return NOT_DONE_YET

    def hotRoute(self, method: bytes, path: bytes, headers):
        """
        The handler of a hot request (firing an event), for either front.

        @param headers: the request's L{Headers}.
        @return: L{serveValue}, or None when the request is not a hot one.
        """
        if method != b"POST":
            return None
        upgrade = headers.getRawHeaders(b"upgrade")
        if upgrade and upgrade[-1].strip().lower() == b"websocket":
            return None
        rest = _splitPath(path)[1]
        if rest is None or len(rest) != 3 or rest[0] != "channels" or rest[2] != "events":
            return None
        return self.serveValue

    def serveValue(self, exchange: Exchange) -> Deferred:
        """
        Serve a request given as a request value: the same route, checks and
        error mapping as every backend request.

        @return: Deferred firing with an L{HTTPResponse}.
        """
        d = maybeDeferred(self._route, exchange)
        d.addErrback(self._failed, exchange)
        d.addCallback(_responseOf)
        return d

    def _handle(self, request):
        # Plain callbacks (no generator): this runs on every request.
        d = maybeDeferred(self._route, request)
        d.addErrback(self._failed, request)
        d.addCallback(self._answer, request)

    def _failed(self, failure, request):
        """@return: the C{(code, jsonBody, headers)} answering C{failure}."""
        e = failure.value
        answer = answerOf(e)
        if answer is not None:
            status, sentence, headers = answer
            return (status, {"error": sentence}, headers)
        if isinstance(e, EngineError):
            return (500, {"error": e.message}, ())
        self.log.failure("backend API request {method} {path} failed", failure, method=request.method, path=request.path)
        return (500, {"error": "The server failed to answer this request."}, ())

    @staticmethod
    def _answer(result, request):
        if result is None:
            return  # streaming
        writeResponse(request, _responseOf(result))

    def _route(self, request) -> Deferred:
        """
        @return: Deferred firing with C{(code, jsonBody, headers)}, or None
            when the response is a stream that answers itself.
        """
        app = self._app
        vhostPath, rest = _splitPath(request.path)
        vhost = app.vhosts.get(vhostPath) if vhostPath is not None else None
        if vhost is None:
            shown = vhostPath if vhostPath is not None else "in this request"
            raise HTTPError(404, f"There is no vhost {shown}.")
        if not rest:
            raise HTTPError(404, f"{vhost.path} is a vhost: browsers connect to it with a WebSocket.")
        if request.getUser() != BACKEND_USER or not app.vhosts.checkToken(vhost.path, request.getPassword()):
            raise HTTPError(
                401,
                f"Authenticate with user 'wr' and the access token of {vhost.path}.",
                [(b"WWW-Authenticate", b'Basic realm="' + REALM + b'"')],
            )
        method = request.method
        # The hot route, straight to its handler.
        if method == b"POST" and len(rest) == 3 and rest[2] == "events" and rest[0] == "channels":
            return self._fire(request, vhost, rest[1])
        methods = _ROUTES.get(_shape(rest))
        if methods is None:
            raise HTTPError(404, f"There is no resource {request.path.decode('ascii', 'replace')}.")
        handler = methods.get(method)
        if handler is None:
            raise HTTPError(
                405,
                f"This resource does not allow {method.decode('ascii', 'replace')}.",
                [(b"Allow", b", ".join(methods))],
            )
        if len(rest) >= 2:
            return getattr(self, handler)(request, vhost, rest[1])
        return getattr(self, handler)(request, vhost)

    def _listChannels(self, request, vhost):
        d = self._app.channels.listChannels(vhost)
        d.addCallback(lambda channels: (200, {"channels": channels}, ()))
        return d

    def _getChannel(self, request, vhost, name):
        d = self._app.channels.getChannel(vhost, name)
        d.addCallback(lambda channel: (200, channel, ()))
        return d

    def _openChannel(self, request, vhost, name):
        d = self._app.channels.openChannel(vhost, name)
        # The name is valid (so ASCII) once the channel is open.
        d.addCallback(lambda _: (202, {}, [(b"Location", f"{vhost.path}/channels/{name}".encode("ascii"))]))
        return d

    def _closeChannel(self, request, vhost, name):
        d = self._app.channels.closeChannel(vhost, name)
        d.addCallback(lambda _: (202, {}, ()))
        return d

    def _fire(self, request, vhost, channel):
        try:
            event, data = parseTrigger(request.content.read() if request.content is not None else b"")
        except InvalidArgument as e:
            return fail(e)
        d = self._channels.fire(vhost, channel, event, data)
        d.addCallback(lambda _: (202, {}, ()))
        return d

    def _triggerWorkers(self, request, vhost):
        try:
            channel, event, data = parseWorkerTrigger(request.content.read() if request.content is not None else b"")
        except InvalidArgument as e:
            return fail(e)
        d = self._app.workers.trigger(vhost, channel, event, data)
        d.addCallback(lambda eventId: (202, {"id": eventId}, ()))
        return d

    def _token(self, request, vhost):
        uid = _queryArgument(request, b"uid", "")
        channels = _queryArgument(request, b"channels", "")
        token = self._app.issueToken(vhost, uid, channels)
        return succeed((200, {"token": token}, [(b"Cache-Control", b"no-store")]))

    def _events(self, request, vhost):
        filterSource = _queryArgument(request, b"filter", ".*")
        anchoredPattern(filterSource, "filter")  # 400 before the stream starts
        app = self._app
        stream = SSEStream(request, app.heartbeat)
        stream.start()
        d = app.workers.connect(vhost, filterSource, stream)

        def connected(worker):
            # Fires at once if the client went away while the worker joined.
            stream.finished.addCallback(lambda _: worker.disconnect())
            self.log.debug("worker {worker} of {vhost} connected", worker=worker.id, vhost=vhost.path)

        def failed(failure):
            self.log.failure("a worker of {vhost} could not connect", failure, vhost=vhost.path)
            stream.close()

        d.addCallbacks(connected, failed)
        return d.addCallback(lambda _: None)
