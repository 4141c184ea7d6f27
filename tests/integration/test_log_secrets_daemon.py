"""
No secret reaches a log line: a real daemon, logging at debug level as
JSON and writing an access log, is sent a vhost token (HTTP Basic), the
admin cookie, another Authorization header, new vhost tokens from the
admin API and single-use browser tokens in query strings; then every line
of its log and its access log is searched for each of them.
"""

import json
import os

import pytest

from .client import basic
from .daemon import Daemon

MOON = "37383acee7109d3136e87fe4af9cf3deb2dc8fef"


@pytest.mark.parametrize("accessFormat", ["combined", "json"])
def test_noSecretInAnyLogLine(tmp_path, accessFormat):
    accessLog = tmp_path / "access.log"
    config = tmp_path / "rocketd.conf"
    config.write_text(
        f"[rocketd]\naccess_log = {accessLog}\naccess_log_format = {accessFormat}\n"
        f"[vhost /moon]\ntoken = {MOON}\n"
    )
    rocketd = Daemon()
    rocketd.start(
        extraArgs=("--config", str(config), "--log-level", "debug", "--log-format", "json"),
        stateDir=str(tmp_path / "state"),
    )
    secrets = [MOON, "Bearer-s3cr3t-value-0123456789"]
    try:
        with open(os.path.join(rocketd.stateDir, "admin.cookie")) as f:
            cookie = f.read().strip()
        secrets.append(cookie)
        admin = {"X-Rocketd-Cookie": cookie}
        backend = {"Authorization": basic("wr", MOON)}
        # Backend requests with the vhost token, right and wrong.
        browser = rocketd.request("GET", "/moon/token?uid=joe&channels=.*", headers=backend)
        assert browser.status == 200, rocketd.logTail()
        browserToken = json.loads(browser.body)["token"]
        secrets.append(browserToken)
        assert rocketd.request("GET", "/moon/token?uid=joe", headers={"Authorization": basic("wr", "0" * 40)}).status == 401
        # The browser token in query strings, and as a Referer.
        rocketd.request("GET", f"/moon?token={browserToken}", headers={"Referer": f"http://x/?t={browserToken}"})
        rocketd.request("GET", f"/restms/domain/?access_token={browserToken}&{browserToken}")
        # Another Authorization header on RestMS.
        rocketd.request("GET", "/restms/domain/", headers={"Authorization": "Bearer Bearer-s3cr3t-value-0123456789"})
        # The admin API: the cookie, right and wrong; new tokens in answers.
        created = rocketd.request("POST", "/vhosts/sun", headers=admin, admin=True)
        assert created.status == 201, rocketd.logTail()
        secrets.append(json.loads(created.body)["token"])
        renewed = rocketd.request("PUT", "/vhosts/sun/token", headers=admin, admin=True)
        secrets.append(json.loads(renewed.body)["token"])
        # A wrong cookie: the real one with its last character changed.
        wrong = cookie[:-1] + ("1" if cookie.endswith("0") else "0")
        assert rocketd.request("GET", "/vhosts", headers={"X-Rocketd-Cookie": wrong}, admin=True).status == 401
        rocketd.request("GET", f"/vhosts?cookie={cookie}", headers=admin, admin=True)
        rocketd.request("GET", "/metrics", admin=True)
    finally:
        rocketd.stop()
    with open(rocketd.logPath, encoding="utf-8", errors="replace") as f:
        daemonLines = f.read().splitlines()
    accessLines = accessLog.read_text(encoding="utf-8").splitlines()
    rocketd.close()
    assert len(accessLines) >= 9, repr(accessLines)
    assert any("/moon?token=-" in line for line in accessLines), accessLines
    # --log-format json: every line of the daemon's log is one JSON object.
    assert daemonLines
    for line in daemonLines:
        assert isinstance(json.loads(line), dict), line
    if accessFormat == "json":
        for line in accessLines:
            assert json.loads(line)["status"] > 0, line
    for line in daemonLines + accessLines:
        for secret in secrets:
            assert secret not in line, (secret, line)
