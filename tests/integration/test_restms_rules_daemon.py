"""
The RestMS rules over a real daemon: every feed type's routing, fifo
deletes, a long poll whose client leaves, conditional PUT and DELETE,
JSON round trips, the bounds and expiry of staged contents, and the bad
inputs a server must refuse cleanly.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse

import pytest

from .client import DEADLINE
from .daemon import Daemon
from .test_restms_daemon import JSON, XML, Client, restms

#: The staged content settings of L{stagingDaemon}.
STAGE_TTL = 3.0
STAGE_MAX_COUNT = 2
STAGE_MAX_BYTES = 1000


@pytest.fixture(scope="module")
def stagingDaemon(tmp_path_factory):
    """A daemon whose feeds keep few staged contents, for a short time."""
    directory = tmp_path_factory.mktemp("staging")
    config = directory / "rocketd.conf"
    config.write_text(
        f"[restms]\nstage_ttl = {STAGE_TTL}\nstage_max_count = {STAGE_MAX_COUNT}\n"
        f"stage_max_bytes = {STAGE_MAX_BYTES}\n"
    )
    rocketd = Daemon()
    rocketd.start(extraArgs=("--config", str(config)), stateDir=str(directory / "state"))
    yield rocketd
    rocketd.close()


def feed(c, name, type):
    response = c.post("/restms/domain/", restms('<feed name="%s" type="%s"/>' % (name, type)))
    assert response.status == 201, response
    return response.header("location")


def joined(c, feedName, address="*", inner="", type="fifo"):
    pipe, _ = c.pipe(type)
    response = c.post(pipe, restms('<join address="%s" feed="/restms/feed/%s">%s</join>' % (address, feedName, inner)))
    assert response.status == 201, response
    return pipe


def ids(c, pipe):
    return [re.search(r'message_id="([^"]*)"', m).group(1) for m in c.held(pipe)]


def publish(c, feedName, *messages):
    """Post C{(address, id)} pairs (or C{(address, id, headers)}) in one document."""
    body = ""
    for address, id, *headers in messages:
        inner = "".join('<header name="%s" value="%s"/>' % kv for kv in (headers[0] if headers else {}).items())
        body += '<message address="%s" message_id="%s">%s</message>' % (address, id, inner)
    response = c.post("/restms/feed/" + feedName, restms(body))
    assert response.status == 200, response


def test_fanout(daemon):
    c = Client(daemon.url)
    feed(c, "r-fanout", "fanout")
    pipes = [joined(c, "r-fanout"), joined(c, "r-fanout", address="ignored")]
    publish(c, "r-fanout", ("x", "1"), ("", "2"))
    assert [ids(c, p) for p in pipes] == [["1", "2"], ["1", "2"]]


def test_direct(daemon):
    c = Client(daemon.url)
    feed(c, "r-direct", "direct")
    red, blue = joined(c, "r-direct", "red"), joined(c, "r-direct", "blue")
    publish(c, "r-direct", ("red", "1"), ("blue", "2"), ("green", "3"), ("red.x", "4"))
    assert (ids(c, red), ids(c, blue)) == (["1"], ["2"])


def test_topic(daemon):
    c = Client(daemon.url)
    feed(c, "r-topic", "topic")
    star, hash_, exact = (joined(c, "r-topic", a) for a in ("a.*", "a.#", "a.b"))
    publish(c, "r-topic", ("a", "1"), ("a.b", "2"), ("a.b.c", "3"), ("b.a", "4"))
    assert (ids(c, star), ids(c, hash_), ids(c, exact)) == (["2"], ["1", "2", "3"], ["2"])


def test_headers(daemon):
    c = Client(daemon.url)
    feed(c, "r-headers", "headers")
    all_ = joined(c, "r-headers", inner='<header name="k" value="1"/><header name="j" value="2"/>')
    any_ = joined(
        c, "r-headers", inner='<header name="x-match" value="any"/><header name="k" value="1"/><header name="j" value="2"/>'
    )
    publish(c, "r-headers", ("", "1", {"k": "1", "j": "2"}), ("", "2", {"k": "1"}), ("", "3", {"k": "2"}))
    assert (ids(c, all_), ids(c, any_)) == (["1"], ["1", "2"])


def test_rotatorRoundRobinAndBacklog(daemon):
    c = Client(daemon.url)
    feed(c, "r-rotator", "rotator")
    # No join yet: the messages wait in the feed for the first join.
    publish(c, "r-rotator", ("", "0"))
    first = joined(c, "r-rotator")
    assert ids(c, first) == ["0"]
    second = joined(c, "r-rotator")
    publish(c, "r-rotator", *[("", str(i)) for i in range(1, 5)])
    got = ids(c, first)[1:], ids(c, second)
    assert sorted(got[0] + got[1]) == ["1", "2", "3", "4"]
    assert len(got[0]) == len(got[1]) == 2


def test_serviceFeedDeletesItself(daemon):
    c = Client(daemon.url)
    feed(c, "r-service", "service")
    pipe = joined(c, "r-service")
    join = c.request("GET", pipe).attr("join", "href", feed=daemon.url + "/restms/feed/r-service")
    assert join is not None
    assert c.request("DELETE", join).status == 200
    assert c.request("GET", "/restms/feed/r-service").status == 404


def test_systemFeedReportsLifecycle(daemon):
    c = Client(daemon.url)
    feed(c, "r-system", "system")
    watcher = joined(c, "r-system", "pipe.*")
    pipe, created = c.pipe()
    addresses = re.findall(r'address="([^"]*)"', " ".join(c.held(watcher)))
    assert "pipe.created" in addresses
    assert c.post("/restms/feed/r-system", restms('<message address="x"/>')).status == 403


def test_fifoDeleteRemovesOlder(daemon):
    c = Client(daemon.url)
    feed(c, "r-fifo", "fanout")
    pipe = joined(c, "r-fifo")
    publish(c, "r-fifo", *[("", str(i)) for i in range(4)])
    hrefs = re.findall(r'<message href="([^"]*)"(?![^>]*async)', c.request("GET", pipe).body.decode())
    assert len(hrefs) == 4
    assert c.request("DELETE", hrefs[2]).status == 200
    assert ids(c, pipe) == ["3"]
    assert c.request("GET", hrefs[0]).status == 404
    assert c.request("DELETE", hrefs[0]).status == 200  # already gone: still 200


def test_asyncletClientLeavesMessageStays(daemon):
    """A client that gives up its long poll loses nothing: the message that arrives later is held."""
    c = Client(daemon.url)
    feed(c, "r-leave", "fanout")
    pipe = joined(c, "r-leave")
    asynclet = c.asynclet(pipe)
    connection = c.connect()
    connection.request("GET", urllib.parse.urlsplit(asynclet).path)
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    publish(c, "r-leave", ("", "kept"))
    assert ids(c, pipe) == ["kept"]
    response = c.request("GET", asynclet)
    assert response.status == 200
    assert 'message_id="kept"' in response.body.decode()


def test_conditionalPutAndDelete(daemon):
    c = Client(daemon.url)
    uri = feed(c, "r-cond", "fanout")
    etag = c.request("GET", uri).header("etag")
    stale = c.request("PUT", uri, restms('<feed title="new"/>'), {"Content-Type": XML, "If-Match": '"nope"'})
    assert stale.status == 412
    assert c.request("GET", uri).attr("feed", "title") == ""
    fresh = c.request("PUT", uri, restms('<feed title="new"/>'), {"Content-Type": XML, "If-Match": etag})
    assert fresh.status == 200
    assert c.request("GET", uri).attr("feed", "title") == "new"
    assert c.request("DELETE", uri, headers={"If-Match": etag}).status == 412
    newTag = c.request("GET", uri).header("etag")
    assert c.request("DELETE", uri, headers={"If-Match": newTag}).status == 200
    assert c.request("GET", uri).status == 404


def test_jsonRoundTrip(daemon):
    """A message posted as JSON reads back the same in JSON and in XML."""
    c = Client(daemon.url)
    feed(c, "r-json", "fanout")
    pipe = joined(c, "r-json")
    message = {
        "address": "a.b",
        "message_id": "m1",
        "correlation_id": "c1",
        "priority": "5",
        "header": [{"name": "h", "value": "v"}],
        "content": [{"type": "text/plain", "$text": "héllo <world>"}],
    }
    posted = c.post("/restms/feed/r-json", json.dumps({"restms": {"message": [message]}}).encode(), JSON)
    assert posted.status == 200, posted
    href = re.search(r'<message href="([^"]*)"(?![^>]*async)', c.request("GET", pipe).body.decode()).group(1)
    got = json.loads(c.request("GET", href, headers={"Accept": JSON}).body)["restms"]["message"][0]
    for key in ("address", "message_id", "correlation_id", "priority", "header"):
        assert got[key] == message[key], key
    assert got["content"][0]["$text"] == "héllo <world>"
    xml = c.request("GET", href, headers={"Accept": XML}).body.decode()
    assert "héllo &lt;world&gt;" in xml
    assert 'correlation_id="c1"' in xml


def test_createExistingFeedWithoutType(daemon):
    """POST of a feed that exists, naming no type: 200 with the existing feed; another type: 409."""
    c = Client(daemon.url)
    uri = feed(c, "r-exists", "fanout")
    for body, headers in ((restms('<feed name="r-exists"/>'), {}), (b"", {"Slug": "r-exists"})):
        again = c.post("/restms/domain/", body, **headers)
        assert again.status == 200, again
        assert again.header("location") == uri
        assert again.attr("feed", "type") == "fanout"
    conflict = c.post("/restms/domain/", restms('<feed name="r-exists" type="topic"/>'))
    assert conflict.status == 409, conflict
    assert c.request("GET", uri).attr("feed", "type") == "fanout"


def test_stagedContentBounds(stagingDaemon):
    """Beyond a feed's bound of unclaimed staged contents, a stage is 507 with a sentence saying so."""
    c = Client(stagingDaemon.url)
    feed(c, "s-bound", "fanout")

    def stage(body):
        return c.post("/restms/feed/s-bound", body, "application/octet-stream")

    first = stage(b"1")
    assert [first.status, stage(b"2").status] == [201, 201]
    full = stage(b"3")
    assert full.status == 507, full
    assert full.header("content-type") == "text/plain; charset=utf-8"
    assert b"'s-bound' already keeps 2 staged contents" in full.body
    # Publishing one frees its place.
    message = restms('<message address="m"><content href="%s"/></message>' % first.header("location"))
    assert c.post("/restms/feed/s-bound", message).status == 200
    assert stage(b"3").status == 201
    # Bytes: another feed, one content over the bound.
    feed(c, "s-bytes", "fanout")
    big = c.post("/restms/feed/s-bytes", b"x" * (STAGE_MAX_BYTES + 1), "application/octet-stream")
    assert big.status == 507, big
    assert b"more than the %d it may keep" % STAGE_MAX_BYTES in big.body


def test_stagedContentExpires(stagingDaemon):
    """A staged content no message claims is gone after stage_ttl seconds."""
    c = Client(stagingDaemon.url)
    feed(c, "s-ttl", "fanout")
    before = time.monotonic()
    location = c.post("/restms/feed/s-ttl", b"soon gone", "text/plain").header("location")
    assert c.request("GET", location).status == 200
    end = before + STAGE_TTL + DEADLINE
    while c.request("GET", location).status == 200:
        assert time.monotonic() < end, "the staged content did not expire"
        time.sleep(0.1)
    assert time.monotonic() - before >= STAGE_TTL - 0.1, "it expired too soon"
    assert c.request("GET", location).status == 404
    message = restms('<message><content href="%s"/></message>' % location)
    assert c.post("/restms/feed/s-ttl", message).status == 404


def test_badInputs(daemon):
    c = Client(daemon.url)
    pipe, created = c.pipe()

    def refused(response, status, word):
        assert response.status == status, response
        assert response.header("content-type") == "text/plain; charset=utf-8"
        assert word.lower() in response.body.decode().lower(), response

    refused(c.post("/restms/domain/", b"<restms><feed"), 400, "xml")
    refused(c.post("/restms/domain/", b'{"restms": [', JSON), 400, "json")
    refused(c.post("/restms/domain/", b"<html><feed/></html>"), 400, "root")
    refused(c.post("/restms/domain/", restms('<feed name="x1" type="bogus"/>')), 400, "type")
    refused(c.post("/restms/domain/", restms('<pipe type="bogus"/>')), 400, "type")
    refused(c.post("/restms/domain/", restms('<feed name="bad name!"/>')), 400, "name")
    refused(c.request("GET", "/restms/resource/nosuchhash"), 404, "resource")
    refused(c.request("GET", "/restms/feed/nosuchfeed"), 404, "nosuchfeed")
    refused(c.request("GET", "/restms/nothing/here"), 404, "")
    # A join onto a feed that does not exist: the document is wrong (400), not the pipe (404).
    refused(c.post(pipe, restms('<join feed="/restms/feed/nosuchfeed"/>')), 400, "/restms/feed/nosuchfeed")
    assert c.request("GET", pipe).status == 200
    # Joins onto the default feed, and the default join, are not the client's to make or delete.
    refused(c.post(pipe, restms('<join address="x" feed="/restms/feed/"/>')), 403, "default")
    defaultJoin = created.attr("join", "href")
    refused(c.request("DELETE", defaultJoin), 403, "default")
    assert c.request("GET", defaultJoin).status == 200
    # A document type the pipe can't read.
    refused(c.post(pipe, b"hello", "text/plain"), 415, "")
    # Every refusal left the daemon serving.
    assert c.request("GET", "/restms/domain/").status == 200
