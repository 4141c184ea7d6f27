"""
The real daemon on the RabbitMQ engine (C{--engine rabbitmq}, a broker
vhost made for the module): the README's two RestMS scenarios, and a
SIGKILL of rocketd that loses no message a POST was answered 200 for.
Skipped, with the reason, without a broker or C{rabbitmqctl}.
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.test_engine_rabbitmq import BROKER, brokerMissing, rabbitmqctl

from .daemon import Daemon
from .test_restms_daemon import Client, restms

if brokerMissing() is not None:
    pytest.skip(brokerMissing(), allow_module_level=True)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    """A daemon on the RabbitMQ engine, on a broker vhost of its own."""
    vhost = f"rocketd-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        rocketd = Daemon()
        url = f"amqp://guest:guest@{BROKER[0]}:{BROKER[1]}/{vhost}"
        rocketd.start(["--engine", "rabbitmq", "--rabbitmq-url", url], stateDir=str(tmp_path_factory.mktemp("rocketd")))
        try:
            yield rocketd
        finally:
            rocketd.close()
    finally:
        rabbitmqctl("delete_vhost", vhost)


def test_newsfeed(rabbit):
    """The README's newsfeed scenario: a topic feed, a joined pipe, held messages, DELETE."""
    c = Client(rabbit.url)
    feed = c.post("/restms/domain/", restms('<feed type="topic"/>'), Slug="news").header("location")
    pipe, _ = c.pipe()
    assert c.post(pipe, restms(f'<join address="rec.pets.*" feed="{feed}"/>')).status == 201
    messages = "".join(
        f'<message address="{a}"><content type="text/plain">{a}</content></message>'
        for a in ("rec.pets.cats", "rec.cars.fast", "rec.pets.dogs")
    )
    assert c.post(feed, restms(messages)).status == 200
    held = c.request("GET", pipe)
    assert [m for m in ("rec.pets.cats", "rec.cars.fast", "rec.pets.dogs") if m in held.body.decode()] == [
        "rec.pets.cats", "rec.pets.dogs"]
    first = held.attr("message", "href", address="rec.pets.cats")
    assert c.request("DELETE", first).status == 200
    assert c.request("GET", first).status == 404
    assert c.request("GET", c.asynclet(pipe) + "?timeout=1").status == 204


def test_serviceSurvivesKill(rabbit):
    """
    The README's service scenario; then SIGKILL of rocketd and a restart:
    the answer is still in the requestor's pipe, readable and deletable.
    """
    c = Client(rabbit.url)
    assert c.post("/restms/domain/", restms('<feed name="time" type="service"/>')).status == 201
    server, _ = c.pipe()
    assert c.post(server, restms('<join feed="/restms/feed/time"/>')).status == 201
    serverNext = c.asynclet(server)
    requestor, _ = c.pipe()
    requestorNext = c.asynclet(requestor)
    name = requestor.rsplit("/", 1)[1]
    request = f'<message address="time" reply_to="{name}"><content type="text/plain">now?</content></message>'
    assert c.post("/restms/feed/", restms(request)).status == 200
    got = c.request("GET", serverNext)
    assert got.status == 200 and f'reply_to="{name}"' in got.body.decode()
    answer = f'<message address="{name}"><content type="text/plain">12:00</content></message>'
    assert c.post("/restms/feed/", restms(answer)).status == 200
    assert "12:00" in c.request("GET", requestorNext).body.decode()
    rabbit.process.kill()
    rabbit.process.wait()
    rabbit.restart()
    c = Client(rabbit.url)
    [held] = c.held(requestor)
    href = dict(re.findall(r'(\w+)="([^"]*)"', held))["href"]
    message = c.request("GET", href)
    assert message.status == 200 and "12:00" in message.body.decode()
    assert c.request("DELETE", href).status == 200
    assert c.held(requestor) == []
