"""
The demo page in a real browser: headless Chromium loads
C{/static/demo.html} from a real daemon in two tabs, two people join the
presence channel and chat through the daemon, and the test reads what each
page shows. A screenshot of each tab is written to the test's output folder.

Chromium is driven over its DevTools protocol (a WebSocket per tab, with
the tests' own client), with C{Runtime.evaluate} to type, click and read
the page. The test skips when Chromium is not installed (Debian's package
C{chromium}; set C{ROCKETD_CHROMIUM} to use another binary).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest

from .daemon import HOST
from .test_websocket_daemon import MOON, Backend, WebSocket, startDaemon

DEADLINE = 20.0


def chromiumBinary():
    for candidate in (os.environ.get("ROCKETD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate:
            found = shutil.which(candidate)
            if found:
                return found
    return None


class Chromium:
    """A headless Chromium with its DevTools endpoint on a loopback port."""

    def __init__(self, binary, profile):
        self.profile = profile
        self.log = open(os.path.join(profile, "chromium.log"), "wb")
        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--window-size=1200,800",
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = self._waitForPort()

    def _waitForPort(self):
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with status {self.process.returncode}:\n{self.logTail()}")
            try:
                with open(path) as f:
                    port = f.readline().strip()
                if port:
                    return int(port)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Chromium did not open its DevTools port within {DEADLINE:g} s:\n{self.logTail()}")

    def logTail(self):
        with open(os.path.join(self.profile, "chromium.log"), "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def http(self, method, path):
        connection = http.client.HTTPConnection(HOST, self.port, timeout=DEADLINE)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body)
            # Most answers are JSON; closing a tab answers a sentence.
            return json.loads(body) if body.lstrip().startswith((b"{", b"[")) else body
        finally:
            connection.close()

    def newTab(self):
        """@return: a L{Tab} on a new blank page."""
        target = self.http("PUT", "/json/new?about:blank")
        return Tab(self, target)

    def close(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class Tab:
    """One page, over its DevTools WebSocket."""

    def __init__(self, chromium, target):
        self.chromium = chromium
        self.id = target["id"]
        path = urllib.parse.urlsplit(target["webSocketDebuggerUrl"]).path
        self.ws = WebSocket(chromium.port, path)
        self._ids = iter(range(1, 1 << 30))

    def call(self, method, **params):
        """Call a DevTools method; @return: its result (events are skipped)."""
        callId = next(self._ids)
        self.ws.send({"id": callId, "method": method, "params": params})
        deadline = time.monotonic() + DEADLINE
        while True:
            message = self.ws.recv(max(0.01, deadline - time.monotonic()))
            if message.get("id") == callId:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        """@return: the value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def waitFor(self, expression, what, timeout=DEADLINE):
        """Wait until a JavaScript expression is truthy; @return: its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the page shows:\n{self.shows()}")
            time.sleep(0.05)

    def navigate(self, url):
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.waitFor("document.readyState === 'complete' && typeof Rocket === 'function'", "the page to load")

    def type(self, selector, text):
        self.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(text)}")

    def click(self, selector):
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def texts(self, selector):
        return self.evaluate(
            f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)"
        )

    def shows(self):
        return json.dumps(
            {
                "status": self.evaluate("document.getElementById('status').textContent"),
                "members": self.texts("#members li"),
                "messages": self.texts("#messages li"),
                "frames": self.texts("#frames li")[-10:],
            },
            indent=2,
        )

    def screenshot(self, path):
        self.call("Page.bringToFront")
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.ws.close()
        self.chromium.http("GET", f"/json/close/{self.id}")


@pytest.fixture
def chromium(tmp_path):
    binary = chromiumBinary()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; or set ROCKETD_CHROMIUM)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser = Chromium(binary, str(profile))
    yield browser
    browser.close()


@pytest.fixture
def daemon(tmp_path):
    rocketd = startDaemon(tmp_path)
    yield rocketd
    rocketd.close()


def join(tab, daemon, name):
    tab.navigate(f"{daemon.url}/static/demo.html")
    tab.type("#vhost", "/moon")
    tab.type("#key", MOON)
    tab.type("#name", name)
    tab.click("#join")


def test_twoTabsChat(chromium, daemon, tmp_path):
    alice, bob = chromium.newTab(), chromium.newTab()
    join(alice, daemon, "alice")
    alice.waitFor("document.querySelectorAll('#members li').length === 1", "alice to be a member")
    assert alice.texts("#members li") == ["alice (you)"]
    assert "Connected as alice" in alice.evaluate("document.getElementById('status').textContent")

    # Bob's tab joins from the address alone, as the README shows.
    bob.navigate(f"{daemon.url}/static/demo.html#vhost=/moon&key={MOON}&name=bob&join=1")
    bob.waitFor("document.querySelectorAll('#members li').length === 2", "bob to see both members")
    assert bob.texts("#members li") == ["alice", "bob (you)"]
    alice.waitFor("document.querySelectorAll('#members li').length === 2", "alice to see bob join")
    assert alice.texts("#members li") == ["alice (you)", "bob"]
    assert "bob joined." in alice.texts("#messages li.system")

    alice.type("#text", "hello bob")
    alice.click("#send")
    bob.waitFor("document.querySelectorAll('#messages li.message').length === 1", "bob to get the message")
    assert bob.texts("#messages li.message b") == ["alice"]
    assert bob.texts("#messages li.message") == ["alicehello bob"]
    bob.type("#text", "hi alice")
    bob.click("#send")
    alice.waitFor("document.querySelectorAll('#messages li.message').length === 2", "alice to see both messages")
    assert alice.texts("#messages li.message") == ["alicehello bob", "bobhi alice"]

    # The page shows the frames the server sent: the protocol is visible.
    frames = "\n".join(alice.texts("#frames li"))
    for needle in ('":connected"', '":authenticated"', '":subscribed"', '":memberJoined"', '"message"'):
        assert needle in frames, needle

    alice.screenshot(tmp_path / "alice.png")
    bob.screenshot(tmp_path / "bob.png")
    assert (tmp_path / "alice.png").read_bytes().startswith(b"\x89PNG")

    # Bob's tab goes away without unsubscribing: alice sees him leave.
    bob.close()
    alice.waitFor("document.querySelectorAll('#members li').length === 1", "alice to see bob leave")
    assert "bob left." in alice.texts("#messages li.system")
    alice.screenshot(tmp_path / "alice-after-bob-left.png")
    alice.close()


def test_reconnectsAndSubscribesAgain(chromium, daemon, tmp_path):
    """
    When the daemon goes away and comes back, rocket.js connects again
    (with backoff), authenticates with a new token and subscribes again.
    """
    alice = chromium.newTab()
    join(alice, daemon, "alice")
    alice.waitFor("document.querySelectorAll('#members li').length === 1", "alice to be a member")
    firstSid = alice.evaluate("rocket.sid")
    alice.evaluate("window.retries = []; rocket.on('close', info => window.retries.push(info.retryIn)); 0")
    daemon.restart()
    alice.waitFor(
        "rocket.state === 'open' && rocket.sid !== null && rocket.sid !== %s" % json.dumps(firstSid),
        "the page to connect again",
        timeout=60,
    )
    subscribed = (
        "Array.from(document.querySelectorAll('#frames li'))"
        ".filter(e => e.textContent.includes('\":subscribed\"')).length"
    )
    alice.waitFor(f"{subscribed} === 2", "the page to subscribe again")
    retries = alice.evaluate("window.retries")
    assert retries and all(250 <= delay <= 30000 for delay in retries), retries
    # The backend fires on the channel: the new subscription receives it.
    Backend(daemon).fire("presence-chat", "message", {"name": "server", "text": "welcome back"})
    alice.waitFor("document.querySelectorAll('#messages li.message').length === 1", "the message after reconnecting")
    assert alice.texts("#messages li.message") == ["serverwelcome back"]
    assert alice.texts("#members li") == ["alice (you)"]
    alice.screenshot(tmp_path / "alice-reconnected.png")
    alice.close()
