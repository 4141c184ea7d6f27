"""
The real daemon driven by a Twisted client: treq on the reactor that
pytest-twisted runs, so that requests wait side by side in one thread
(the other integration tests use the standard library's blocking client,
and threads when two requests must wait at once).
"""

from __future__ import annotations

import re

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from .client import DEADLINE

XML = "application/restms+xml"


def restms(inner: str) -> bytes:
    return ('<?xml version="1.0"?><restms xmlns="http://www.imatix.com/schema/restms">%s</restms>' % inner).encode()


async def request(method, url, body=None, headers=None):
    """One request on its own connection, with a deadline; @return: (response, body)."""
    d = treq.request(method, url, data=body, headers=headers or {}, persistent=False)
    d.addTimeout(DEADLINE, reactor)
    response = await d
    return response, await treq.content(response)


@pytest_twisted.ensureDeferred
async def test_asyncletAnsweredWhileItWaits(daemon):
    """
    An asynclet GET made before any message waits; a message published
    while it waits answers it.
    """
    xml = {"Content-Type": [XML]}
    response, _ = await request("POST", daemon.url + "/restms/domain/", restms('<feed name="treq" type="fanout"/>'), xml)
    assert response.code == 201
    response, _ = await request("POST", daemon.url + "/restms/domain/", restms('<pipe type="fifo"/>'), xml)
    assert response.code == 201
    pipe = response.headers.getRawHeaders("location")[0]
    response, _ = await request("POST", pipe, restms('<join feed="/restms/feed/treq"/>'), xml)
    assert response.code == 201
    _, body = await request("GET", pipe)
    asynclet = re.search(rb'<message href="([^"]+)"[^>]*async="1"', body).group(1).decode()

    waiting = Deferred.fromCoroutine(request("GET", asynclet))
    # Another round trip meanwhile: the asynclet still has no answer.
    assert (await request("GET", pipe))[0].code == 200
    assert not waiting.called
    published = await request("POST", daemon.url + "/restms/feed/treq", restms('<message address="waits"/>'), xml)
    assert published[0].code == 200
    response, body = await waiting
    assert response.code == 200, body
    assert b'address="waits"' in body
