"""
C{rocketctl} against a real daemon (C{twistd -n rocketd} on free loopback
ports): rocketctl runs as a child process, as an operator would run it, and
its vhosts are checked with real backend requests on the main listener.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import stat
import subprocess
import sys
import urllib.parse

import pytest

from .daemon import Daemon, freePort, twistdEnvironment

DEADLINE = 10.0
TOKEN = re.compile(r"[0-9a-f]{40}")
DECLARED = "5e1f0a3b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"


def rocketctl(daemon, *args, state=True, admin=None):
    """
    Run rocketctl for C{daemon}.

    @param state: give C{--state-dir} (the daemon's) before C{args}.
    @return: the completed process (text C{stdout}, C{stderr}).
    """
    env = {k: v for k, v in twistdEnvironment().items() if not k.startswith("ROCKETD_")}
    command = [sys.executable, "-m", "rocketd.admin.cli", "--admin", admin or daemon.adminUrl]
    if state:
        command += ["--state-dir", daemon.stateDir]
    return subprocess.run(
        command + list(args),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(daemon, *args):
    """Run rocketctl, check it succeeded, and return its output lines."""
    result = rocketctl(daemon, *args)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout.splitlines()


def failing(daemon, *args, **kw):
    """Run rocketctl, check it failed as it should, and return the error sentence."""
    result = rocketctl(daemon, *args, **kw)
    assert result.returncode == 1, result
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0][len("error: ") :]


def backend(daemon, method, path, token=None):
    """
    One backend API request, with HTTP Basic C{wr:token} when a token is given.

    @return: the status.
    """
    headers = {}
    if token is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(b"wr:" + token.encode()).decode()
    return daemon.request(method, path, headers=headers, timeout=DEADLINE).status


def addVhost(daemon, path):
    """rocketctl add-vhost: check the output and return the token."""
    lines = ok(daemon, "add-vhost", path)
    assert len(lines) == 2 and lines[0] == path and TOKEN.fullmatch(lines[1]), lines
    return lines[1]


def showVhost(daemon, path):
    return dict(line.split(": ", 1) for line in ok(daemon, "show-vhost", path))


def test_addVhostGivesAWorkingToken(daemon):
    """add-vhost prints the path and a token that the backend API accepts, and only it."""
    token = addVhost(daemon, "/moon")
    assert backend(daemon, "POST", "/moon/channels/x", token) == 202
    assert backend(daemon, "POST", "/moon/channels/y") == 401
    assert backend(daemon, "POST", "/moon/channels/y", "0" * 40) == 401
    assert ok(daemon, "list-channels", "/moon") == ["x 0"]


def test_manageAVhost(daemon):
    """list, show, regenerate-token, channels and delete, checked on the backend API."""
    old = addVhost(daemon, "/sun")
    assert "/sun" in ok(daemon, "list-vhosts")
    assert showVhost(daemon, "/sun") == {
        "path": "/sun",
        "token": old,
        "channels": "0",
        "slow clients closed": "0",
        "declared": "no",
    }

    (new,) = ok(daemon, "regenerate-token", "/sun")
    assert TOKEN.fullmatch(new) and new != old
    assert showVhost(daemon, "/sun")["token"] == new
    assert backend(daemon, "GET", "/sun/channels", old) == 401
    assert backend(daemon, "GET", "/sun/channels", new) == 200

    assert ok(daemon, "add-channel", "/sun", "news") == []
    assert ok(daemon, "add-channel", "/sun", "chat") == []
    assert ok(daemon, "list-channels", "/sun") == ["chat 0", "news 0"]
    assert showVhost(daemon, "/sun")["channels"] == "2"
    assert backend(daemon, "DELETE", "/sun/channels/chat", new) == 202
    assert ok(daemon, "delete-channel", "/sun", "news") == []
    assert ok(daemon, "list-channels", "/sun") == []
    assert backend(daemon, "DELETE", "/sun/channels/news", new) == 404

    assert ok(daemon, "delete-vhost", "/sun") == []
    assert "/sun" not in ok(daemon, "list-vhosts")
    assert backend(daemon, "GET", "/sun/channels", new) == 404


def test_nestedVhost(daemon):
    """A vhost path with several segments works everywhere."""
    token = addVhost(daemon, "/apps/chat")
    assert "/apps/chat" in ok(daemon, "list-vhosts")
    assert backend(daemon, "POST", "/apps/chat/channels/room", token) == 202
    assert ok(daemon, "list-channels", "/apps/chat") == ["room 0"]
    assert ok(daemon, "add-channel", "/apps/chat", "lobby") == []
    assert showVhost(daemon, "/apps/chat")["channels"] == "2"
    assert ok(daemon, "list-workers", "/apps/chat") == []
    (new,) = ok(daemon, "regenerate-token", "/apps/chat")
    assert backend(daemon, "GET", "/apps/chat/channels", new) == 200
    assert ok(daemon, "delete-vhost", "/apps/chat") == []
    assert backend(daemon, "GET", "/apps/chat/channels", new) == 404
    assert "/apps" in failing(daemon, "show-vhost", "/apps")


def test_listWorkers(daemon):
    """A worker connected to the event stream is listed with its filter."""
    token = addVhost(daemon, "/mercury")
    connection = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(daemon.url).port, timeout=DEADLINE)
    try:
        query = urllib.parse.urlencode({"filter": "chat/.*"})
        auth = "Basic " + base64.b64encode(b"wr:" + token.encode()).decode()
        connection.request("GET", "/mercury/events?" + query, headers={"Authorization": auth})
        response = connection.getresponse()
        assert response.status == 200
        (line,) = ok(daemon, "list-workers", "/mercury")
        workerId, filter, connected = line.split(" ")
        assert workerId and filter == "chat/.*"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", connected)
    finally:
        connection.close()


def test_errors(daemon):
    """Every failure is one C{error:} line on stderr and exit status 1."""
    addVhost(daemon, "/venus")
    assert "/venus" in failing(daemon, "add-vhost", "/venus")
    assert "/nope" in failing(daemon, "show-vhost", "/nope")
    assert "/nope" in failing(daemon, "delete-vhost", "/nope")
    assert "/nope" in failing(daemon, "add-channel", "/nope", "x")
    assert "/nope" not in ok(daemon, "list-vhosts")
    failing(daemon, "add-vhost", "/bad name")
    failing(daemon, "add-vhost", "/restms")
    failing(daemon, "add-channel", "/venus", "-bad")
    assert "nothing" in failing(daemon, "delete-channel", "/venus", "nothing")
    failing(daemon, "frobnicate")
    failing(daemon, "add-vhost")


def test_cookie(daemon, tmp_path):
    """
    The cookie file is private; the admin API refuses requests without the
    cookie, and rocketctl says when its cookie file is wrong or missing.
    """
    cookieFile = os.path.join(daemon.stateDir, "admin.cookie")
    assert stat.S_IMODE(os.stat(cookieFile).st_mode) == 0o600
    response = daemon.request("GET", "/vhosts", admin=True)
    assert response.status == 401
    assert response.headers["Content-Type"] == "application/json"

    wrong = tmp_path / "wrong.cookie"
    wrong.write_text("0" * 64 + "\n")
    assert "cookie" in failing(daemon, "--cookie-file", str(wrong), "list-vhosts", state=False)
    missing = str(tmp_path / "nowhere")
    assert missing in failing(daemon, "--state-dir", missing, "list-vhosts", state=False)
    with open(cookieFile) as f:
        cookie = f.read().strip()
    right = tmp_path / "right.cookie"
    right.write_text(cookie + "\n")
    result = rocketctl(daemon, "--cookie-file", str(right), "list-vhosts", state=False)
    assert result.returncode == 0, result


def test_adminNotListening(daemon):
    """A refused connection is an error that names the admin URL."""
    url = "http://127.0.0.1:%d" % (freePort(),)
    message = failing(daemon, "list-vhosts", admin=url)
    assert url in message and "refused" in message


def test_vhostSurvivesARestart(daemon):
    """A vhost made with rocketctl keeps its token and its use across a restart."""
    token = addVhost(daemon, "/mars")
    addVhost(daemon, "/apps/game")
    daemon.restart()
    vhosts = ok(daemon, "list-vhosts")
    assert "/mars" in vhosts and "/apps/game" in vhosts
    assert showVhost(daemon, "/mars")["token"] == token
    assert backend(daemon, "POST", "/mars/channels/x", token) == 202
    assert backend(daemon, "POST", "/mars/channels/x") == 401


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """A daemon whose config file declares the vhost /fixed."""
    directory = tmp_path_factory.mktemp("rocketd-declared")
    config = directory / "rocketd.conf"
    config.write_text("[vhost /fixed]\ntoken = %s\n" % (DECLARED,))
    rocketd = Daemon()
    rocketd.start(extraArgs=("--config", str(config)), stateDir=str(directory / "state"))
    yield rocketd
    rocketd.close()


def test_declaredVhost(declared):
    """A vhost from the config file is shown but can't be deleted or re-tokened."""
    assert ok(declared, "list-vhosts") == ["/fixed"]
    assert showVhost(declared, "/fixed") == {
        "path": "/fixed",
        "token": DECLARED,
        "channels": "0",
        "slow clients closed": "0",
        "declared": "yes",
    }
    assert "config" in failing(declared, "delete-vhost", "/fixed")
    assert "config" in failing(declared, "regenerate-token", "/fixed")
    assert showVhost(declared, "/fixed")["token"] == DECLARED
    assert ok(declared, "add-channel", "/fixed", "news") == []
    assert backend(declared, "GET", "/fixed/channels", DECLARED) == 200
