"""
L{rocketd.client} against the real daemon (no mocks): RestMS feeds,
pipes, joins, publishing and the asynclet loop; the WebRocket backend's
channels, browser tokens and worker event stream; errors as
L{RocketdError} with the status and the server's sentence.
"""

from __future__ import annotations

from contextlib import aclosing

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from rocketd.client import RestMS, RocketdError, WebRocketBackend

from .client import DEADLINE
from .daemon import startVhostDaemon

MOON = "37383acee7109d3136e87fe4af9cf3deb2dc8fef"


@pytest.fixture(scope="module")
def moon(tmp_path_factory):
    rocketd = startVhostDaemon(tmp_path_factory.mktemp("client"), MOON)
    yield rocketd
    rocketd.close()


def fresh():
    """
    A treq client whose connections close after each request: treq's
    global pool would keep them (and their timers) beyond the test, which
    the trial tests that follow would find in the reactor.
    """
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def _metrics(daemon) -> bytes:
    response = await fresh().get(daemon.adminUrl + "/metrics")
    return await response.content()


async def _waitForMetric(daemon, sample: bytes) -> bytes:
    """Scrape until C{sample} is in the metrics (at most 100 times, 20 ms apart); @return: that scrape."""
    for _ in range(100):
        scraped = await _metrics(daemon)
        if sample in scraped:
            return scraped
        await deferLater(reactor, 0.02)
    raise AssertionError(f"{sample!r} not in the metrics: {scraped!r}")


def deadline(coroutine):
    """The coroutine as a Deferred that fails after L{DEADLINE} seconds."""
    return Deferred.fromCoroutine(coroutine).addTimeout(DEADLINE, reactor)


async def first(iterator, count=1):
    """The first C{count} items; then the iterator is closed (as aclosing() does)."""
    got = []
    async with aclosing(iterator) as items:
        async for item in items:
            got.append(item)
            if len(got) == count:
                break
    return got


@pytest_twisted.ensureDeferred
async def test_publishAndReceive(moon):
    """The five-line example: a feed, a pipe, a join, a publish, a receive."""
    r = RestMS(moon.url, http=fresh())
    feed = await r.createFeed("client-news", "fanout")
    pipe = await r.createPipe()
    await r.join(pipe, feed)
    await r.publish(feed, "hello", address="greeting", headers={"lang": "en"}, reply_to="me")
    await r.publishMany(feed, [{"content": b"\x00\x01", "contentType": "application/octet-stream"}, {"address": "x"}])
    messages = await deadline(first(r.messages(pipe), 3))
    assert [m.address for m in messages] == ["greeting", "", "x"]
    assert (messages[0].text, messages[0].headers, messages[0].properties["reply_to"]) == ("hello", {"lang": "en"}, "me")
    assert messages[1].contents == [("application/octet-stream", b"\x00\x01")]
    # Each message was deleted as the loop asked for the next: the one the
    # loop was left on is still held (at least once), until deleted.
    document = await r.get(pipe)
    held = [m["href"] for m in document["restms"]["pipe"][0].get("message", []) if "async" not in m]
    assert held == [messages[2].href]
    # ETags: the unchanged document again (a 304 served from the cache).
    assert await r.get(pipe) == document
    await r.delete(pipe)
    with pytest.raises(RocketdError) as e:
        await r.get(pipe)
    assert e.value.status == 404


@pytest_twisted.ensureDeferred
async def test_errorsCarryStatusAndSentence(moon):
    r = RestMS(moon.url, http=fresh())
    with pytest.raises(RocketdError) as e:
        await r.createFeed("bad", "nosuchtype")
    assert e.value.status == 400
    assert "nosuchtype" in e.value.sentence
    with pytest.raises(RocketdError) as e:
        await WebRocketBackend(moon.url, "/moon", "0" * 40, http=fresh()).channels()
    assert e.value.status == 401


@pytest_twisted.ensureDeferred
async def test_webrocketBackend(moon):
    """Channels, broadcast, browser tokens and the worker event stream."""
    backend = WebRocketBackend(moon.url, "/moon", MOON, http=fresh())
    await backend.openChannel("rooms")
    assert {"name": "rooms", "subscribers": 0} in await backend.channels()
    await backend.broadcast("rooms", "hello", {"from": "test"})
    assert len(await backend.browserToken("joe", "rooms")) == 128
    events = backend.workerEvents(filter="rooms/.*")
    receiving = deadline(first(events))
    # The open stream is counted in the metrics.
    scraped = await _waitForMetric(moon, b"rocketd_workers 1.0")
    assert b"rocketd_sse_streams 1.0" in scraped, scraped
    await backend.trigger("ping", {"n": 1}, channel="rooms")
    (event,) = await receiving
    # Leaving the loop closed the stream: the worker is gone.
    assert await _waitForMetric(moon, b"rocketd_workers 0.0")
    assert (event.event, event.data["n"]) == ("rooms/ping", 1)
    await backend.closeChannel("rooms")
