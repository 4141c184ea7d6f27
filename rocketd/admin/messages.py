"""
C{rocketctl}'s message commands, on L{rocketd.client} (treq, a reactor):

    rocketctl publish FEED [--address A] [--header K=V]... [--content-type T] [BODY | -]
    rocketctl subscribe FEED [--address PATTERN] [--json]
    rocketctl fire /VHOST CHANNEL EVENT [JSON]
    rocketctl workers-tail /VHOST [--filter RE]

They speak to the main listener (C{--url}, C{$ROCKETD_URL}, default
C{http://127.0.0.1:8080}). C{fire} and C{workers-tail} need the vhost's
token: C{--token}, C{$ROCKETD_TOKEN}, else it is read from the admin API
with the admin cookie. C{subscribe} makes a pipe and a join, prints each
message as it arrives until interrupted (Ctrl-C, SIGTERM), then deletes
the pipe (and so its join).
"""

from __future__ import annotations

import json
from typing import Callable

#: The main listener when nothing else is said.
DEFAULT_URL = "http://127.0.0.1:8080"


def addCommands(command: Callable) -> None:
    """
    Add the message commands to C{rocketctl}'s parser.

    @param command: C{command(name, help) -> argparse parser}.
    """
    publish = command("publish", "publish one message to a RestMS feed (the body from BODY or standard input)")
    publish.add_argument("feed", help="the feed: a name (news) or a URI")
    publish.add_argument("body", nargs="?", default=None, help="the message content; - or none: standard input")
    publish.add_argument("--address", default="", help="the message's routing address")
    publish.add_argument("--header", action="append", default=[], metavar="K=V", help="an application header")
    publish.add_argument("--content-type", default="text/plain", metavar="TYPE", help="the content's type")
    subscribe = command(
        "subscribe", "make a pipe joined to a RestMS feed, print its messages until interrupted, then remove it"
    )
    subscribe.add_argument("feed", help="the feed: a name (news) or a URI")
    subscribe.add_argument("--address", default="*", metavar="PATTERN", help="the join's address pattern")
    subscribe.add_argument("--json", action="store_true", help="print each message as one JSON object")
    fire = command("fire", "fire an event to every subscriber of a WebRocket channel")
    fire.add_argument("vhost", help="the vhost path, e.g. /moon")
    fire.add_argument("channel", help="the channel name")
    fire.add_argument("event", help="the event name")
    fire.add_argument("data", nargs="?", default="{}", help="the event's data, a JSON object")
    tail = command("workers-tail", "print the events browsers trigger, as a backend worker, until interrupted")
    tail.add_argument("vhost", help="the vhost path, e.g. /moon")
    tail.add_argument("--filter", default=".*", metavar="RE", help="which channel/event names")


COMMANDS = ("publish", "subscribe", "fire", "workers-tail")


def _feedURI(feed: str) -> str:
    if feed.startswith(("http://", "https://", "/")):
        return feed
    return "/restms/feed/" + feed


def _messageJSON(m) -> str:
    contents = []
    for contentType, data in m.contents:
        try:
            contents.append({"type": contentType, "text": data.decode("utf-8")})
        except UnicodeDecodeError:
            import base64

            contents.append({"type": contentType, "base64": base64.b64encode(data).decode()})
    return json.dumps(
        {"address": m.address, "properties": m.properties, "headers": m.headers, "contents": contents},
        ensure_ascii=False,
    )


def run(options, environ, stdin, stdout, token: Callable[[str], str], error) -> int:
    """
    Run one message command on the global reactor (so once per process).

    @param token: C{token(vhost) -> str}: the vhost's token from the admin
        API (called only when neither C{--token} nor C{$ROCKETD_TOKEN}).
    @param error: the exception class whose one argument is the sentence
        to report (C{rocketctl}'s C{CommandError}).
    @return: the exit status.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    from rocketd.client import RestMS, RocketdError, WebRocketBackend

    url = options.url or environ.get("ROCKETD_URL") or DEFAULT_URL

    def vhostToken(vhost: str) -> str:
        return options.token or environ.get("ROCKETD_TOKEN") or token(vhost)

    outcome = {"status": 0, "error": None}
    cleanups = []

    async def publish():
        headers = {}
        for item in options.header:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise error(f"a header is NAME=VALUE, not {item!r}")
            headers[name] = value
        body = options.body
        content = stdin.buffer.read() if body in (None, "-") else body.encode("utf-8")
        await RestMS(url).publish(
            _feedURI(options.feed), content, address=options.address, contentType=options.content_type, headers=headers
        )

    async def subscribe():
        r = RestMS(url)
        pipe = await r.createPipe(title="rocketctl subscribe")

        async def remove():
            try:
                await r.delete(pipe)
            except Exception:
                pass

        cleanups.append(remove)
        await r.join(pipe, _feedURI(options.feed), address=options.address)
        async for m in r.messages(pipe):
            line = _messageJSON(m) if options.json else f"{m.address} {m.text}"
            stdout.write(line + "\n")
            stdout.flush()

    async def fire():
        try:
            data = json.loads(options.data)
        except ValueError:
            raise error(f"the event data is not JSON: {options.data!r}") from None
        if not isinstance(data, dict):
            raise error("the event data must be a JSON object")
        backend = WebRocketBackend(url, options.vhost, vhostToken(options.vhost))
        await backend.broadcast(options.channel, options.event, data)

    async def workersTail():
        backend = WebRocketBackend(url, options.vhost, vhostToken(options.vhost))
        async for event in backend.workerEvents(filter=options.filter):
            stdout.write(f"{event.id} {event.event} {json.dumps(event.data, ensure_ascii=False)}\n")
            stdout.flush()

    coroutine = {"publish": publish, "subscribe": subscribe, "fire": fire, "workers-tail": workersTail}[
        options.command
    ]

    def failed(failure):
        if failure.check(RocketdError):
            outcome["error"] = failure.value.sentence
        elif failure.check(error):
            outcome["error"] = failure.value.args[0]
        else:
            outcome["error"] = f"{failure.getErrorMessage() or failure.type.__name__} (at {url})"
        outcome["status"] = 1

    async def cleanUp():
        for cleanup in cleanups:
            await cleanup()

    def start():
        d = ensureDeferred(coroutine())
        d.addErrback(failed)
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    # Interrupted: stop; the pipe is removed before the reactor ends.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: ensureDeferred(cleanUp()))
    reactor.callWhenRunning(start)
    reactor.run()
    if outcome["error"] is not None:
        raise error(outcome["error"])
    return outcome["status"]
