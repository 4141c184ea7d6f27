"""
Smoke tests of the real daemon: C{twistd rocketd} starts, serves on both
listeners, stops cleanly, keeps its state across a restart, and refuses a
bad command line with one sentence.
"""

import os
import signal
import socket

from rocketd.tap import Options

from .daemon import Daemon, runTwistd


def test_help():
    """C{twistd rocketd --help} lists every option."""
    result = runTwistd(["rocketd", "--help"])
    assert result.returncode == 0, result.stdout + result.stderr
    for parameter in Options.optParameters:
        assert f"--{parameter[0]}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_restmsDomain(daemon):
    """The default domain is served at C{/restms/domain/}."""
    response = daemon.request("GET", "/restms/domain/")
    assert response.status == 200, daemon.logTail()
    assert b"restms" in response.body
    assert response.headers["Content-Type"].split(";")[0] in ("application/restms+xml", "text/xml", "application/xml")


def test_admin(daemon):
    """The admin listener answers, and refuses a request without the cookie."""
    response = daemon.request("GET", "/vhosts", admin=True)
    assert 400 <= response.status < 500
    assert os.path.exists(os.path.join(daemon.stateDir, "admin.cookie"))


def test_stopAndRestart(tmp_path):
    """
    SIGTERM shuts the daemon down cleanly; started again on the same state
    directory, it serves again with the same admin secret.
    """
    rocketd = Daemon()
    rocketd.start(stateDir=str(tmp_path))
    try:
        cookiePath = os.path.join(rocketd.stateDir, "admin.cookie")
        with open(cookiePath, "rb") as f:
            cookie = f.read()
        rocketd.restart()
        assert rocketd.request("GET", "/restms/domain/").status == 200
        with open(cookiePath, "rb") as f:
            assert f.read() == cookie
    finally:
        status = rocketd.stop()
    # twistd, once shut down, ends itself with the signal it was given.
    assert status in (0, -signal.SIGTERM)
    log = rocketd.logTail(400)
    assert log.count("Main loop terminated.") == 2
    assert "Traceback" not in log


def assertOneLineError(result, *fragments):
    """
    The command failed with one sentence (after twistd's synopsis line),
    and no traceback.
    """
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) <= 2 and lines[0].startswith("Usage:"), output
    for fragment in fragments:
        assert fragment in lines[-1]


def test_badOption(tmp_path):
    """A bad option value stops twistd with one sentence saying why."""
    result = runTwistd(["--nodaemon", "--pidfile=", "rocketd", "--state-dir", str(tmp_path), "--long-poll=soon"])
    assertOneLineError(result, "--long-poll", "'soon'")


def test_badConfigFile(tmp_path):
    """A mistake in the config file stops twistd with one sentence naming it."""
    config = tmp_path / "rocketd.conf"
    config.write_text("[restms]\nlong_pol = 5\n")
    result = runTwistd(["--nodaemon", "--pidfile=", "rocketd", "--state-dir", str(tmp_path), "-c", str(config)])
    assertOneLineError(result, str(config), "'long_pol'")


def test_portTaken(tmp_path):
    """A listener that can't listen stops the daemon with one sentence, not a daemon serving nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runTwistd(
            ["--nodaemon", "--pidfile=", "--logfile=-", "rocketd", "--state-dir", str(tmp_path),
             "--listen", "tcp:%d:interface=127.0.0.1" % port, "--admin", "tcp:0:interface=127.0.0.1"],
            timeout=30,
        )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rocketd: Couldn't listen on 127.0.0.1:%d" % port in output
    assert "Traceback" not in output
