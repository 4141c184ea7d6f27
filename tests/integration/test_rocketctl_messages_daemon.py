"""
C{rocketctl publish/subscribe/fire/workers-tail} end to end: rocketctl
runs as a child process against a real daemon, as a user would run it.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time

import pytest

from .client import basic
from .daemon import startVhostDaemon, twistdEnvironment

DEADLINE = 10.0
MOON = "37383acee7109d3136e87fe4af9cf3deb2dc8fef"


@pytest.fixture(scope="module")
def moon(tmp_path_factory):
    rocketd = startVhostDaemon(tmp_path_factory.mktemp("ctl"), MOON)
    yield rocketd
    rocketd.close()


def command(daemon, *args):
    env = {k: v for k, v in twistdEnvironment().items() if not k.startswith("ROCKETD_")}
    return [sys.executable, "-m", "rocketd.admin.cli", "--admin", daemon.adminUrl, "--state-dir", daemon.stateDir,
            "--url", daemon.url, *args], env


def run(daemon, *args, input=None):
    argv, env = command(daemon, *args)
    return subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=DEADLINE * 3)


def readLine(process, deadline):
    """One line of the process's output, or None at the deadline."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            return process.stdout.readline()
    return None


def pipesOf(daemon):
    response = daemon.request("GET", "/restms/domain/", headers={"Accept": "application/restms+json"})
    return [p for p in json.loads(response.body)["restms"]["domain"][0].get("pipe", [])
            if p.get("title") == "rocketctl subscribe"]


@pytest.mark.parametrize("name", ["publish", "subscribe", "fire", "workers-tail"])
def test_help(moon, name):
    result = run(moon, name, "--help")
    assert result.returncode == 0 and "usage: rocketctl " + name in result.stdout, result.stderr


def test_subscribeThenPublish(moon):
    """
    subscribe prints what publish sends (from BODY and from standard
    input), as JSON with --json; interrupted, it removes its pipe.
    """
    assert run(moon, "publish", "--help").returncode == 0
    created = moon.request("POST", "/restms/domain/", b'{"restms": {"feed": [{"name": "ctl", "type": "fanout"}]}}',
                           {"Content-Type": "application/restms+json"})
    assert created.status in (200, 201)
    argv, env = command(moon, "subscribe", "ctl", "--json")
    subscriber = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + DEADLINE
        line = None
        # Publish until the subscriber's join exists and it prints (bounded).
        for _ in range(20):
            result = run(moon, "publish", "ctl", "hello", "--address", "a.b", "--header", "lang=en")
            assert result.returncode == 0, result.stderr
            line = readLine(subscriber, min(deadline, time.monotonic() + 0.5))
            if line:
                break
        assert line, subscriber.stderr.read() if subscriber.poll() is not None else "no message"
        message = json.loads(line)
        assert (message["address"], message["headers"], message["contents"][0]["text"]) == ("a.b", {"lang": "en"}, "hello")
        assert run(moon, "publish", "ctl", "-", input="from stdin").returncode == 0
        while True:
            line = readLine(subscriber, deadline)
            assert line is not None
            if json.loads(line)["contents"][0]["text"] == "from stdin":
                break
        assert pipesOf(moon)
        subscriber.send_signal(signal.SIGINT)
        assert subscriber.wait(DEADLINE) == 0, subscriber.stderr.read()
        assert pipesOf(moon) == []
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()


def test_publishErrors(moon):
    result = run(moon, "publish", "no-such-feed", "x")
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "no-such-feed" in result.stderr
    result = run(moon, "publish", "ctl", "x", "--header", "novalue")
    assert result.returncode == 1 and "NAME=VALUE" in result.stderr


def test_fireAndWorkersTail(moon):
    """
    fire reaches a channel (the token read from the admin API); a worker
    event waits in the backlog and workers-tail prints it.
    """
    moon.request("POST", "/moon/channels/ctl", headers={"Authorization": basic("wr", MOON)})
    result = run(moon, "fire", "/moon", "ctl", "hello", '{"a": 1}')
    assert result.returncode == 0, result.stderr
    result = run(moon, "fire", "/moon", "nochannel", "hello")
    assert result.returncode == 1 and "error: " in result.stderr
    assert run(moon, "fire", "/moon", "ctl", "hello", "[1]").returncode == 1
    triggered = moon.request("POST", "/moon/events", json.dumps({"trigger": {"event": "ping", "channel": "ctl",
                             "data": {"n": 7}}}).encode(), {"Authorization": basic("wr", MOON),
                             "Content-Type": "application/json"})
    assert triggered.status in (200, 202), triggered.body
    argv, env = command(moon, "--token", MOON, "workers-tail", "/moon", "--filter", "ctl/.*")
    tail = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = readLine(tail, time.monotonic() + DEADLINE)
        assert line is not None, "no event"
        id, event, data = line.split(" ", 2)
        assert (event, json.loads(data)["n"]) == ("ctl/ping", 7)
        tail.send_signal(signal.SIGINT)
        assert tail.wait(DEADLINE) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
