"""
The RestMS face: a Klein app, mounted at C{/restms}, that serves domains,
feeds, pipes, joins, messages, contents and asynclets from an
L{rocketd.interfaces.IEngine} in XML and JSON.

Routes find the resource (a domain by name, a public feed by name, a
private resource by hash); the resource's kind and the HTTP method pick a
handler C{_{kind}_{METHOD}}; a method without a handler is 403 (RestMS
never answers 405). Handlers are coroutines that return the response body
(bytes); a streaming one returns when its stream ends. Every failure
becomes a C{text/plain} sentence with the status
L{rocketd.restms._errors.statusFor} gives it.

The user guide, with every decision taken where the drafts are silent, is
C{docs/restms.md}.
"""

from __future__ import annotations

import math
import re
from typing import Optional
from urllib.parse import quote, unquote

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from rocketd.engine.message import Content, Message
from rocketd.errors import NoSuchResource
from rocketd.http.peers import isLoopback
from rocketd.http.coalesce import Coalescer
from rocketd.http.exchange import Exchange, writeResponse
from rocketd.http.sse import Heartbeat, lastEventID
from rocketd.interfaces import DEFAULT_DOMAIN, DEFAULT_FEED, IAsynclet, IContent, IFeed, IHeldMessage, IJoin, IPipe
from rocketd.restms import documents
from rocketd.restms._errors import RestMSError, badRequest, forbidden, notFound, statusFor
from rocketd.restms._streams import STREAMING, streamEvents, streamMultipart
from rocketd.restms._uris import Reference, baseURI, feedPath, parseReference, resourcePath
from rocketd.restms.codec import MEDIA_TYPES, parseDocument, requestKind, responseKind
from rocketd.restms.conditional import Validators, notModified, preconditionFailed, setValidators

#: Private resources by the interface they provide, most specific first.
_KINDS = (
    (IHeldMessage, "message"),
    (IAsynclet, "asynclet"),
    (IContent, "content"),
    (IJoin, "join"),
    (IPipe, "pipe"),
    (IFeed, "feed"),
)

#: What each kind is called in error sentences.
_NAMES = {
    "domain": "a domain",
    "feed": "a feed",
    "pipe": "a pipe",
    "join": "a join",
    "message": "a message",
    "content": "a content",
    "asynclet": "an asynclet",
}

#: Response headers an error answer must not keep from a handler's start.
_SUCCESS_HEADERS = (b"etag", b"last-modified", b"location", b"content-location", b"link", b"vary")

_PLAIN = b"text/plain; charset=utf-8"


def _header(request, name: bytes) -> Optional[str]:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def _mediaTypes(accept: Optional[str]):
    """The media types an C{Accept} value lists, lower case, parameters left out."""
    if not accept:
        return []
    return [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]


class RestMSApp:
    """
    The RestMS face of an engine.

    @param engine: the L{rocketd.interfaces.IEngine}; its default domain
        exists before requests arrive.
    @param clock: the L{twisted.internet.interfaces.IReactorTime} that
        times long polls and heartbeats.
    @param longPoll: how many seconds an asynclet GET waits at most.
    @param heartbeat: the L{Heartbeat} of the SSE streams (shared with the
        other streams of C{clock}); by default one of this face's own, every
        15 seconds.
    @param authorizeDomain: None, or a callable C{(request, name) -> bool}
        that says whether this request may reach the domain C{name}; the
        default domain is always reachable, and without this callable no
        other domain is. A domain the request may not reach is answered as
        unknown (404), so its existence is not revealed.
    @param anonymous: who may use RestMS, which has no authentication of
        its own: C{"loopback"} (clients on this machine only; others get
        403) or C{"any"}.
    @param coalescer: the L{Coalescer} that joins the SSE frames of one
        reactor turn (shared with the other streams of C{clock}); by default
        one of this face's own.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        engine,
        clock,
        longPoll: float = 30.0,
        heartbeat: Optional[Heartbeat] = None,
        authorizeDomain=None,
        anonymous: str = "loopback",
        coalescer: Optional[Coalescer] = None,
    ):
        if anonymous not in ("loopback", "any"):
            raise ValueError("anonymous is 'loopback' or 'any'")
        self.engine = engine
        self.anonymous = anonymous
        self.authorizeDomain = authorizeDomain
        self.clock = clock
        self.longPoll = longPoll
        self.heartbeat = heartbeat if heartbeat is not None else Heartbeat(clock, 15.0)
        self.coalescer = coalescer if coalescer is not None else Coalescer(clock)

    def resource(self):
        """The resource to mount at C{/restms}."""
        return _RestMSResource(self, self.app.resource())

    # -- routes --------------------------------------------------------------

    @app.route("/", strict_slashes=False)
    def _root(self, request):
        return self._serve(request, self._nothing, None)

    @app.route("/<path:rest>")
    def _unknown(self, request, rest):
        return self._serve(request, self._nothing, None)

    @app.route("/domain/", strict_slashes=False)
    def _defaultDomain(self, request):
        return self._serve(request, self._findDomain, DEFAULT_DOMAIN, deletable=False)

    @app.route("/domain/<path:name>", strict_slashes=False)
    def _domain(self, request, name):
        return self._serve(request, self._findDomain, name.rstrip("/") or DEFAULT_DOMAIN, deletable=False)

    @app.route("/feed/", strict_slashes=False)
    def _defaultFeed(self, request):
        return self._serve(request, self._findFeed, DEFAULT_FEED)

    @app.route("/feed/<name>", strict_slashes=False)
    def _feed(self, request, name):
        return self._serve(request, self._findFeed, name)

    @app.route("/resource/<hash>", strict_slashes=False)
    def _resource(self, request, hash):
        return self._serve(request, self._findResource, hash)

    # -- dispatch ------------------------------------------------------------

    def _serve(self, request, find, name, deletable=True) -> Deferred:
        """
        Find the resource, run the handler for its kind and the method.

        @param find: an async function of C{(name, request)} giving C{(kind, resource)}
            or failing with L{NoSuchResource}.
        @param deletable: whether a DELETE of a resource C{find} does not
            find is the idempotent 200 (domains are never deleted: 404).

        @return: Deferred firing with the response body (bytes); Klein
            cancels it when the client goes away.
        """
        d = Deferred.fromCoroutine(self._handle(request, find, name, deletable))
        d.addErrback(self._failed, request)
        return d

    def serveValue(self, exchange: Exchange, find, name, deletable: bool = True) -> Deferred:
        """
        Serve a hot request given as a request value: the same L{_serve} as
        Klein's routes, its answer collected into a response value.

        @return: Deferred firing with an L{HTTPResponse}, or None when the
            client went away (L{Exchange.abandon} then cancel).
        """
        d = self._serve(exchange, find, name, deletable)
        d.addCallback(lambda body: None if body is None else exchange.response(body))
        return d

    async def _handle(self, request, find, name, deletable):
        method = request.method.decode("ascii", "replace").upper()
        if method == "HEAD":
            method = "GET"
        if self.anonymous != "any" and not isLoopback(request):
            raise forbidden(
                "This server answers RestMS requests from its own machine only "
                "(its [restms] anonymous setting is loopback)."
            )
        try:
            kind, target = await find(name, request)
        except NoSuchResource:
            if method == "DELETE" and deletable:
                return self._deleteGone(request)
            raise
        handler = getattr(self, f"_{kind}_{method}", None)
        if handler is None:
            raise forbidden(f"The {method} method is not allowed on {_NAMES[kind]}.")
        return await handler(request, target)

    async def _nothing(self, name, request):
        raise notFound("There is no RestMS resource at this path.")

    async def _findDomain(self, name, request):
        if name != DEFAULT_DOMAIN and (self.authorizeDomain is None or not self.authorizeDomain(request, name)):
            raise NoSuchResource(f"There is no domain named {name!r}.")
        return "domain", await self.engine.getDomain(name)

    async def _findFeed(self, name, request):
        domain = await self.engine.getDomain(DEFAULT_DOMAIN)
        try:
            return "feed", await domain.getFeed(name)
        except NoSuchResource:
            raise NoSuchResource(f"There is no feed named {name!r}.")

    async def _findResource(self, hash, request):
        try:
            resource = await self.engine.lookup(hash)
        except NoSuchResource:
            raise NoSuchResource("There is no resource at this URI.")
        for interface, kind in _KINDS:
            if interface.providedBy(resource):
                return kind, resource
        raise NoSuchResource("There is no resource at this URI.")

    def _deleteGone(self, request) -> bytes:
        """A DELETE of a resource that is already gone: done, unless C{If-Match} says otherwise."""
        if preconditionFailed(request, None):
            raise RestMSError(412, "The resource no longer exists, so If-Match can't hold.")
        return self._empty(request, 200)

    def _failed(self, failure, request):
        # The response is over (finished, or the client went away; a lost
        # connection takes the request's channel).
        gone = request.finished or request.channel is None
        if failure.check(CancelledError):
            if gone:
                # The client went away: nothing to answer.
                return None
            return self._error(request, 503, "The server is shutting down.")
        answer = statusFor(failure.value)
        if answer is None:
            self.log.failure("RestMS request {method} {uri} failed", failure, method=request.method, uri=request.uri)
            answer = (500, "The server failed to handle the request.", ())
        if request.startedWriting:
            if not gone:
                request.finish()
            return None
        status, sentence, headers = answer
        body = self._error(request, status, sentence)
        for name, value in headers:
            request.setHeader(name, value)
        return body

    # -- responses -----------------------------------------------------------

    def _error(self, request, status: int, sentence: str) -> bytes:
        for name in _SUCCESS_HEADERS:
            request.responseHeaders.removeHeader(name)
        body = sentence.encode("utf-8") + b"\n"
        request.setResponseCode(status)
        request.setHeader(b"content-type", _PLAIN)
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    @staticmethod
    def _empty(request, status: int) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-length", b"0")
        return b""

    def _responseKind(self, request) -> str:
        """The representation the client accepts, or 406."""
        kind = responseKind(_header(request, b"accept"))
        if kind is None:
            raise RestMSError(406, "The server answers with application/restms+xml or application/restms+json only.")
        return kind

    def _send(self, request, kind: str, body: bytes, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", MEDIA_TYPES[kind].encode("ascii"))
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    @staticmethod
    def _validate(request, validators: Validators, kind: Optional[str], conditional: bool = True) -> bool:
        """
        Set a response's validators (for representation C{kind}, None for a
        raw content); when the GET's conditions hold, set up a 304 answer.

        @return: whether the answer is 304 (then its body is empty).
        """
        setValidators(request, validators, kind)
        if kind is not None:
            request.setHeader(b"vary", b"Accept")
        if conditional and request.method in (b"GET", b"HEAD") and notModified(request, validators, kind):
            request.setResponseCode(304)
            return True
        return False

    def _document(
        self,
        request,
        element,
        kind: str,
        validators: Optional[Validators] = None,
        status: int = 200,
        location: Optional[str] = None,
    ) -> bytes:
        """
        Answer with a document, its validators, and a C{Location} for a
        created resource. A GET whose conditions hold is answered 304.
        """
        if location is not None:
            request.setHeader(b"location", location.encode("ascii"))
        if validators is not None and self._validate(request, validators, kind):
            return b""
        return self._send(request, kind, documents.render(documents.document(element), kind), status)

    def _message(self, request, held, kind: str, conditional: bool) -> bytes:
        """Answer with a held message: its document, C{Content-Location} and the next message's C{Link}."""
        base = baseURI(request)
        request.setHeader(b"content-location", (base + resourcePath(held.hash)).encode("ascii"))
        request.setHeader(b"link", b'<%s>; rel="next"' % (base + resourcePath(held.next)).encode("ascii"))
        if self._validate(request, Validators.of(held), kind, conditional):
            return b""
        return self._send(request, kind, documents.renderHeldMessage(held, kind, base.encode("ascii")))

    # -- request bodies ------------------------------------------------------

    @staticmethod
    def _body(request) -> bytes:
        content = request.content
        if content is None:
            return b""
        content.seek(0)
        return content.read()

    def _readDocument(self, request, optional: bool = False):
        """
        The request's RestMS document.

        @return: the root L{Element}, or None when C{optional} and the body is empty.
        @raise RestMSError: 415 for a Content-Type that is not a RestMS
            document, 400 for no body or a malformed one.
        """
        body = self._body(request)
        if not body.strip():
            if optional:
                return None
            raise badRequest("The request has no RestMS document.")
        kind = requestKind(_header(request, b"content-type"), generic=True)
        if kind is None:
            raise RestMSError(
                415, "The request body must be a RestMS document (application/restms+xml or application/restms+json)."
            )
        return parseDocument(body, kind)

    def _check(self, request, resource) -> None:
        """Refuse a PUT or DELETE whose preconditions do not hold (412)."""
        if preconditionFailed(request, Validators.of(resource)):
            raise RestMSError(412, "The resource has changed since the client read it.")

    def _timeout(self, request) -> float:
        """The long-poll window: the configured one, or less if C{?timeout=} asks."""
        values = request.args.get(b"timeout")
        if not values:
            return self.longPoll
        try:
            asked = float(values[0])
        except ValueError:
            asked = -1.0
        if not math.isfinite(asked) or asked < 0:
            raise badRequest("The timeout parameter must be a number of seconds, 0 or more.")
        return min(asked, self.longPoll)

    async def _resolveFeed(self, text: str):
        """
        The feed a join names: an absolute URI, a path, or a public feed name.

        @raise RestMSError: 400 when the URI is not a feed's, or names a feed
            that does not exist (the sentence names it): the join's document
            is what is wrong, and the pipe the client posted to exists.
        """
        reference = parseReference(text)
        if reference is None or reference.kind == "domain":
            raise badRequest(f"{text} is not the URI of a feed.")
        try:
            if reference.kind == "feed":
                domain = await self.engine.getDomain(DEFAULT_DOMAIN)
                return await domain.getFeed(reference.name)
            resource = await self.engine.lookup(reference.name)
        except NoSuchResource:
            raise badRequest(f"The join names the feed {text}, which does not exist.")
        if not IFeed.providedBy(resource):
            raise badRequest(f"{text} is not a feed.")
        return resource

    # -- domains -------------------------------------------------------------

    @staticmethod
    def _domainValidators(domain, feeds) -> Validators:
        # The domain's document lists its feeds' titles and licenses, which
        # change without the domain's version: the tag covers them.
        state = "domain-%s-%d.%d" % (quote(domain.name, safe=""), domain.version, sum(f.version for f in feeds))
        return Validators(state, max([domain.modified] + [f.modified for f in feeds]))

    async def _domain_GET(self, request, domain):
        kind = self._responseKind(request)
        feeds = await domain.listFeeds()
        # Pipe names are capabilities: only the default domain lists its
        # pipes (as the seed wants); other domains (WebRocket vhosts) hold
        # pipes of other clients (workers, browser subscriptions).
        pipes = await domain.listPipes() if domain.name == DEFAULT_DOMAIN else []
        element = documents.domainElement(domain, feeds, pipes, baseURI(request))
        return self._document(request, element, kind, self._domainValidators(domain, feeds))

    async def _domain_POST(self, request, domain):
        kind = self._responseKind(request)
        root = self._readDocument(request, optional=True)
        slug = _header(request, b"slug")
        slug = unquote(slug).strip() or None if slug is not None else None
        if root is None:
            # The seed's short form: all defaults. A Slug names a public
            # feed; without one the client gets a pipe.
            element = documents.Element("feed" if slug else "pipe", {}, [])
        else:
            element = documents.child(root, "feed", "pipe")
            if element is None:
                raise badRequest("The document holds no feed or pipe to create.")
        base = baseURI(request)
        if element.tag == "feed":
            spec = documents.readFeed(element)
            if spec.name and slug and spec.name != slug:
                raise badRequest("The Slug header and the feed's name attribute differ.")
            # No type named: an existing public feed of that name is given
            # back whatever its type (the client asked for nothing that
            # conflicts); a new feed is a topic feed.
            feed, created = await domain.createFeed(
                name=spec.name or slug,
                type=spec.type or None,
                title=spec.title or "",
                license=spec.license or "",
            )
            return self._document(
                request,
                documents.feedElement(feed, base),
                kind,
                Validators.of(feed),
                status=201 if created else 200,
                location=base + feedPath(feed),
            )
        spec = documents.readPipe(element)
        pipe = await domain.createPipe(type=spec.type or "fifo", title=spec.title or "")
        return await self._pipeDocument(request, pipe, kind, status=201, location=base + resourcePath(pipe.hash))

    async def _domain_PUT(self, request, domain):
        raise forbidden("A domain can't be changed.")

    async def _domain_DELETE(self, request, domain):
        raise forbidden("A domain can't be deleted.")

    # -- feeds ---------------------------------------------------------------

    async def _feed_GET(self, request, feed):
        kind = self._responseKind(request)
        return self._document(request, documents.feedElement(feed, baseURI(request)), kind, Validators.of(feed))

    async def _feed_PUT(self, request, feed):
        kind = self._responseKind(request)
        if feed.isDefault:
            raise forbidden("The default feed can't be changed.")
        self._check(request, feed)
        root = self._readDocument(request)
        element = documents.child(root, "feed")
        if element is None:
            raise badRequest("The document holds no feed.")
        spec = documents.readFeed(element)
        if spec.name and spec.name != feed.name:
            raise badRequest("A feed's name can't change.")
        if spec.type and spec.type != feed.type:
            raise badRequest("A feed's type can't change.")
        feed = await feed.update(title=spec.title, license=spec.license)
        return self._document(request, documents.feedElement(feed, baseURI(request)), kind, Validators.of(feed))

    async def _feed_DELETE(self, request, feed):
        if feed.isDefault:
            raise forbidden("The default feed can't be deleted.")
        self._check(request, feed)
        await feed.delete()
        return self._empty(request, 200)

    async def _feed_POST(self, request, feed):
        contentType = _header(request, b"content-type")
        kind = requestKind(contentType)
        if kind is None:
            return await self._stage(request, feed, contentType)
        specs = documents.readMessages(parseDocument(self._body(request), kind))
        messages = []
        for spec in specs:
            contents = []
            for content in spec.contents:
                if isinstance(content, Reference):
                    content = await feed.claimContent(content.name)
                contents.append(content)
            address = spec.address
            if feed.isDefault and "/" in address:
                # A reply_to written as the pipe's URI (as the seed's
                # requestor does) reaches the pipe of that name.
                reference = parseReference(address)
                if reference is not None and reference.kind == "resource":
                    address = reference.name
            messages.append(
                Message(address=address, properties=spec.properties, headers=spec.headers, contents=tuple(contents))
            )
        await feed.publish(messages)
        return self._empty(request, 200)

    async def _stage(self, request, feed, contentType: Optional[str]):
        """Stage a raw body on a feed: 201, its C{Location} and its content document."""
        kind = self._responseKind(request)
        # The seed's "{MIME-type};type=content" marks a content: keep the MIME type.
        parts = [part.strip() for part in (contentType or "application/octet-stream").split(";")]
        mediaType = "; ".join(part for part in parts if part and part.replace(" ", "").lower() != "type=content")
        staged = await feed.stageContent(Content(mediaType or "application/octet-stream", self._body(request)))
        base = baseURI(request)
        return self._document(
            request,
            documents.contentElement(staged, base),
            kind,
            Validators.of(staged),
            status=201,
            location=base + resourcePath(staged.hash),
        )

    # -- pipes ---------------------------------------------------------------

    async def _pipeDocument(self, request, pipe, kind, status=200, location=None) -> bytes:
        joins = await pipe.listJoins()
        messages = await pipe.listMessages()
        element = documents.pipeElement(pipe, joins, messages, baseURI(request))
        return self._document(request, element, kind, Validators.of(pipe), status=status, location=location)

    async def _pipe_GET(self, request, pipe):
        types = _mediaTypes(_header(request, b"accept"))
        if "text/event-stream" in types or "multipart/mixed" in types:
            if pipe.type != "stream":
                raise RestMSError(406, "Only a stream pipe can be read as a stream.")
            return await self._stream(request, pipe, types)
        return await self._pipeDocument(request, pipe, self._responseKind(request))

    async def _stream(self, request, pipe, types):
        base = baseURI(request).encode("ascii")
        if "text/event-stream" in types:
            resumeAfter = lastEventID(request)
            if resumeAfter:
                await self._acknowledge(pipe, resumeAfter)
            return await streamEvents(request, pipe, base, self.heartbeat, self.coalescer)
        json = "application/restms+json" in types or "application/json" in types
        return await streamMultipart(request, pipe, "json" if json else "xml", base)

    @staticmethod
    async def _acknowledge(pipe, lastEventId: str) -> None:
        """Drop the held messages an SSE client says it has seen (sequence up to C{lastEventId})."""
        try:
            last = int(lastEventId.strip())
        except ValueError:
            return
        seen = [held for held in await pipe.listMessages() if held.sequence <= last]
        if seen:
            await pipe.remove(seen[-1].hash)

    async def _pipe_POST(self, request, pipe):
        kind = self._responseKind(request)
        root = self._readDocument(request)
        element = documents.child(root, "join")
        if element is None:
            raise badRequest("The document holds no join.")
        spec = documents.readJoin(element)
        if not spec.feed:
            raise badRequest("A join needs the URI of its feed.")
        feed = await self._resolveFeed(spec.feed)
        join, created = await pipe.join(feed, address=spec.address, headers=spec.headers or None)
        base = baseURI(request)
        return self._document(
            request,
            documents.joinElement(join, base),
            kind,
            Validators.of(join),
            status=201 if created else 200,
            location=base + resourcePath(join.hash),
        )

    async def _pipe_DELETE(self, request, pipe):
        self._check(request, pipe)
        await pipe.delete()
        return self._empty(request, 200)

    # -- joins ---------------------------------------------------------------

    async def _join_GET(self, request, join):
        kind = self._responseKind(request)
        return self._document(request, documents.joinElement(join, baseURI(request)), kind, Validators.of(join))

    async def _join_DELETE(self, request, join):
        if join.isDefault:
            raise forbidden("A pipe's default join can't be deleted.")
        self._check(request, join)
        await join.delete()
        return self._empty(request, 200)

    # -- messages, contents, asynclets ---------------------------------------

    async def _message_GET(self, request, held):
        return self._message(request, held, self._responseKind(request), conditional=True)

    async def _message_DELETE(self, request, held):
        self._check(request, held)
        await held.pipe.remove(held.hash)
        return self._empty(request, 200)

    async def _content_GET(self, request, content):
        if self._validate(request, Validators.of(content), None):
            return b""
        body = content.content.body
        request.setHeader(b"content-type", content.content.type.encode("latin-1"))
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    async def _content_DELETE(self, request, content):
        """
        Delete a content: a staged one is gone; a held message's content
        leaves the message, which stays held with the others (the drafts'
        clients GET, then DELETE, each content they receive).
        """
        self._check(request, content)
        await content.delete()
        return self._empty(request, 200)

    async def _asynclet_GET(self, request, asynclet):
        """
        Wait for the message the asynclet names: 200 with it when it
        arrives, 204 at the end of the long-poll window. Cancelling (the
        client went away) cancels the wait; the message, when it comes,
        stays in the pipe.
        """
        kind = self._responseKind(request)
        timeout = self._timeout(request)
        waiting = asynclet.pipe.wait(asynclet.hash)
        held = await waiting.addTimeout(timeout, self.clock, onTimeoutCancel=lambda result, timeout: None)
        if held is None:
            request.setResponseCode(204)
            return b""
        return self._message(request, held, kind, conditional=False)

    async def _asynclet_DELETE(self, request, asynclet):
        raise forbidden("A message that has not arrived can't be deleted.")


#: The media types that ask a pipe for a stream (served by twisted.web only).
_STREAM_TYPES = (b"text/event-stream", b"multipart/mixed")

#: The route shapes every message passes through, to the find method.
_SHAPES = {b"feed": "_findFeed", b"resource": "_findResource"}


def _hotShape(postpath):
    """
    @param postpath: the path's segments after C{/restms}, percent-decoded
        (as twisted.web's traversal gives them).
    @return: C{(find, name, deletable)} for C{/restms/feed/NAME} and
        C{/restms/resource/HASH} (a trailing slash allowed), and for
        C{/restms/domain[/NAME]} where every segment of the name is plain
        (L{_PLAIN_SEGMENT}: then Klein's C{<path:name>} would give the same
        name); else None.
    """
    if postpath and postpath[0] == b"domain":
        return _domainShape(postpath[1:])
    find = _SHAPES.get(postpath[0]) if 2 <= len(postpath) <= 3 and postpath[1] else None
    if find is None or (len(postpath) == 3 and postpath[2]):
        return None
    try:
        return find, postpath[1].decode("utf-8"), True
    except UnicodeDecodeError:
        return None


#: A segment of a domain name that both routers read the same way.
_PLAIN_SEGMENT = re.compile(rb"[A-Za-z0-9_~-][A-Za-z0-9._~-]*\Z")


def _domainShape(segments):
    if segments and segments[-1] == b"":
        segments = segments[:-1]
    if not all(_PLAIN_SEGMENT.match(segment) for segment in segments):
        return None
    return "_findDomain", b"/".join(segments).decode("ascii") or DEFAULT_DOMAIN, False


def _answersWithValue(method: bytes, accept: Optional[bytes]) -> bool:
    """
    Whether a request to a hot shape is answered by a response value: not a
    HEAD (twisted.web drops its body) nor a GET that may become a stream.
    """
    if method == b"HEAD":
        return False
    return accept is None or not any(t in accept.lower() for t in _STREAM_TYPES)


def hotRoute(restms: RestMSApp, method: bytes, postpath, accept: Optional[bytes]):
    """
    The handler of a hot request, for either front.

    @param postpath: the path's segments after C{/restms}, percent-decoded.
    @param accept: the request's C{Accept} value, or None.
    @return: a callable C{(exchange) -> Deferred} of an
        L{rocketd.http.exchange.HTTPResponse} (or of None when the client
        went away), or None when the request is not one of the hot routes.
    """
    shape = _hotShape(postpath)
    if shape is None or not _answersWithValue(method, accept):
        return None
    find, name, deletable = shape
    return lambda exchange: restms.serveValue(exchange, getattr(restms, find), name, deletable)


class _RestMSResource(Resource):
    """
    C{/restms}: the two route shapes every message passes through
    (C{/restms/feed/NAME}: publish; C{/restms/resource/HASH}: messages,
    asynclets, pipes), and C{/restms/domain[/NAME]} with a plain name
    (clients create their pipes there, often on the connection they then
    publish on), are dispatched here, straight to the app's
    L{RestMSApp._serve}; every other path goes to the Klein app. The
    handlers are the same: only the routing is cheaper (Klein and
    werkzeug cost about 170 us a request on the benchmark machine, see
    benchmarks/PROFILE.md). A request these shapes answer with a response
    value (L{hotRoute}) is served as the front door serves it: as an
    L{Exchange}, written back with L{writeResponse}.
    """

    isLeaf = True

    def __init__(self, restms: RestMSApp, klein):
        Resource.__init__(self)
        self._restms = restms
        self._klein = klein

    def render(self, request):
        path = request.postpath
        shape = _hotShape(path)
        if shape is None:
            return self._klein.render(request)
        find, name, deletable = shape
        if _answersWithValue(request.method, request.getHeader(b"accept")):
            exchange = Exchange.fromRequest(request)
            d = self._restms.serveValue(exchange, getattr(self._restms, find), name, deletable)

            def gone(_):
                exchange.abandon()
                d.cancel()

            request.notifyFinish().addErrback(gone)
            d.addCallback(_write, request)
        elif not deletable:
            # A domain's HEAD or stream GET: Klein's route.
            return self._klein.render(request)
        else:
            d = self._restms._serve(request, getattr(self._restms, find), name)
            # As Klein does: a client that goes away cancels the handler.
            request.notifyFinish().addErrback(lambda _: d.cancel())
            d.addCallback(_answer, request)
        d.addErrback(_failed, request)
        return NOT_DONE_YET


def _write(response, request) -> None:
    if response is not None:
        writeResponse(request, response)


def _answer(body, request) -> None:
    """Write a handler's answer and finish (a running stream writes and finishes its own)."""
    if body is STREAMING:
        STREAMING.render(request)
        return
    if request.finished or request.channel is None:
        return
    if body:
        request.write(body)
    request.finish()


def _failed(failure, request) -> None:
    if request.finished or request.channel is None:
        RestMSApp.log.failure("RestMS request {uri} failed after its answer", failure, uri=request.uri)
        return
    request.processingFailed(failure)
