"""
Run the real daemon for integration tests: C{twistd -n rocketd} in a
child process, on free loopback ports, with the checkout's code.

    daemon = Daemon()
    daemon.start()
    response = daemon.request("GET", "/restms/domain/")
    daemon.stop()

Everything the daemon writes (twistd's log, and any error before logging
starts) goes to C{rocketd.log} in its state directory; when the daemon
does not come up, the error carries the end of that log.
"""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

#: The checkout whose code the daemon runs.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The interface every test listener binds.
HOST = "127.0.0.1"
#: The command that runs twistd with this interpreter (so with the test
#: environment's packages), whatever scripts are installed.
TWISTD = (sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()")
#: How many lines of the log a start failure shows.
LOG_TAIL = 40


class DaemonError(RuntimeError):
    """The daemon did not start, or did not stop."""


def freePort() -> int:
    """
    @return: a TCP port that is free on the loopback interface now (the
        daemon binds it a moment later; the kernel does not hand it out
        again that soon).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def twistdEnvironment() -> dict:
    """
    @return: the environment in which a child twistd imports the
        checkout's C{rocketd} and finds its plugin.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def runTwistd(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """
    Run C{twistd ARGS} to completion (for C{--help} and bad command lines).

    @return: the completed process, with text C{stdout} and C{stderr}.
    """
    return subprocess.run(
        [*TWISTD, *args],
        cwd=tempfile.gettempdir(),
        env=twistdEnvironment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Daemon:
    """
    One daemon process.

    @ivar url: the main listener's base URL, e.g. C{http://127.0.0.1:4321}
        (no trailing slash).
    @ivar adminUrl: the admin listener's base URL.
    @ivar stateDir: the state directory (it holds C{rocketd.log}).
    @ivar process: the running L{subprocess.Popen}, or None.
    """

    def __init__(self, startTimeout: float = 20.0, stopTimeout: float = 10.0, fileLimit: Optional[int] = None):
        """
        @param fileLimit: the daemon's limit on open files (soft and hard
            C{RLIMIT_NOFILE}, as C{ulimit -n} sets), or None for this
            process's.
        """
        self.startTimeout = startTimeout
        self.fileLimit = fileLimit
        self.stopTimeout = stopTimeout
        self.process: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.adminPort: Optional[int] = None
        self.stateDir: Optional[str] = None
        self._extraArgs: Sequence[str] = ()
        self._ownStateDir = False
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def adminUrl(self) -> str:
        return f"http://{HOST}:{self.adminPort}"

    @property
    def logPath(self) -> str:
        return os.path.join(self.stateDir, "rocketd.log")

    def start(self, extraArgs: Sequence[str] = (), stateDir: Optional[str] = None) -> None:
        """
        Start the daemon and wait until both listeners answer HTTP.

        @param extraArgs: more C{rocketd} options (after the listeners and
            the state directory, so they win).
        @param stateDir: the state directory; a new temporary one (removed
            by L{close}) if None.
        @raise DaemonError: if it exits or does not answer within the start
            timeout; the message ends with the log's tail.
        """
        if self.process is not None:
            raise DaemonError("The daemon is running already.")
        if stateDir is None:
            stateDir = tempfile.mkdtemp(prefix="rocketd-")
            self._ownStateDir = True
        self.stateDir = os.path.abspath(stateDir)
        self.port, self.adminPort = freePort(), freePort()
        self._extraArgs = tuple(extraArgs)
        self._spawn()

    def restart(self) -> None:
        """
        Stop the daemon and start it again with the same ports, state
        directory and options.
        """
        self.stop()
        self._spawn()

    def _spawn(self) -> None:
        args = [
            *TWISTD,
            "--nodaemon",
            "--pidfile=",
            "rocketd",
            "--listen",
            f"tcp:{self.port}:interface={HOST}",
            "--admin",
            f"tcp:{self.adminPort}:interface={HOST}",
            "--state-dir",
            self.stateDir,
            *self._extraArgs,
        ]
        os.makedirs(self.stateDir, exist_ok=True)
        self._log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            args,
            cwd=self.stateDir,
            env=twistdEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if self.fileLimit is None else self._limitFiles,
        )
        try:
            self._waitUntilServing()
        except BaseException:
            self.stop()
            raise

    def _limitFiles(self) -> None:
        # In the child, before exec.
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fileLimit, self.fileLimit))

    def _waitUntilServing(self) -> None:
        deadline = time.monotonic() + self.startTimeout
        pending = [self.port, self.adminPort]
        while pending:
            if self.process.poll() is not None:
                raise DaemonError(
                    f"The daemon exited with status {self.process.returncode} before serving.\n{self.logTail()}"
                )
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"The daemon did not answer on port {pending[0]} within {self.startTimeout:g} s.\n"
                    f"{self.logTail()}"
                )
            try:
                _request(pending[0], "GET", "/", timeout=1.0)
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
            else:
                pending.pop(0)

    def stop(self) -> Optional[int]:
        """
        Stop the daemon: SIGTERM, then SIGKILL if it has not exited within
        the stop timeout. Stopping a stopped daemon does nothing.

        @return: the process's exit status (negative: the signal that ended
            it; twistd ends itself with SIGTERM after a clean shutdown), or
            None if it was not running.
        """
        process, self.process = self.process, None
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stopTimeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    raise DaemonError(
                        f"The daemon did not stop within {self.stopTimeout:g} s of SIGTERM; "
                        f"it was killed.\n{self.logTail()}"
                    )
            return process.returncode
        finally:
            self._log.close()

    def close(self) -> None:
        """Stop the daemon and remove the state directory if it made it."""
        try:
            self.stop()
        finally:
            if self._ownStateDir and self.stateDir is not None:
                shutil.rmtree(self.stateDir, ignore_errors=True)
                self._ownStateDir = False

    def logTail(self, lines: int = LOG_TAIL) -> str:
        """@return: the last lines of the daemon's log."""
        try:
            with open(self.logPath, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Mapping[str, str] = {},
        admin: bool = False,
        timeout: float = 10.0,
    ) -> Response:
        """
        Make one HTTP request to the daemon (straight to it, whatever
        proxy the environment names).

        @param path: the path and query, e.g. C{/restms/domain/}.
        @param admin: True for the admin listener, False for the main one.
        @return: the L{Response}, whatever its status.
        """
        return _request(self.adminPort if admin else self.port, method, path, body, headers, timeout)


def startVhostDaemon(directory, token: str, extra: str = "") -> "Daemon":
    """
    Start a daemon whose config file (in C{directory}, with its state
    beside it) declares the vhost C{/moon} with C{token}, and C{extra}
    lines after it.
    """
    config = directory / "rocketd.conf"
    config.write_text(f"[vhost /moon]\ntoken = {token}\n{extra}")
    rocketd = Daemon()
    rocketd.start(extraArgs=("--config", str(config)), stateDir=str(directory / "state"))
    return rocketd


def _request(port, method, path, body=None, headers={}, timeout=10.0) -> Response:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        connection.close()
