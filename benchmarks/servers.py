"""
The two servers under test, each started on a free loopback port in its
own temporary directory and stopped by its pid:

  - L{RocketdServer}: C{twistd -n rocketd} from this checkout, one Python
    process, with a config file that declares the benchmark's vhost and
    raises the pipe depth so that no message is dropped;
  - L{NchanServer}: nginx with the nchan module, one worker process, its
    own prefix and config (publisher at C{/pub?id=CHANNEL}, WebSocket and
    EventSource subscribers at C{/sub?id=CHANNEL}).

L{ensureNchan} finds (and, as root, installs) nginx and the module;
L{useProjectPython} makes sure a command runs under a Python that can run
rocketd (the project's C{.venv}, as the README makes it).
"""

from __future__ import annotations

import http.client
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Tuple

from benchmarks import procstat

#: The checkout whose rocketd is measured.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
#: The vhost the benchmark declares in rocketd's config.
VHOST = "/bench"
#: Where Debian's libnginx-mod-nchan puts the module.
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
NCHAN_PACKAGES = ("nginx", "libnginx-mod-nchan")
#: Every pipe may hold this many messages before the oldest is dropped
#: (the default, 10000, would drop messages in long runs against slow readers).
PIPE_DEPTH = 1000000


#: The project's own environment, as the README's commands make it.
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
#: What a Python must import to run C{twistd rocketd} from this checkout.
ROCKETD_IMPORTS = "import twisted.scripts.twistd, rocketd.tap, rocketd.app"
#: How the README makes the project's environment.
VENV_COMMAND = "python3 -m venv .venv && .venv/bin/pip install ."


class ServerError(RuntimeError):
    """A server did not start or did not stop."""


def canRunRocketd(python: str) -> bool:
    """
    @return: whether C{python}, with the checkout on its path (as
        L{RocketdServer} runs it), imports what C{twistd rocketd} needs.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    try:
        return subprocess.run(
            [python, "-c", ROCKETD_IMPORTS],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        ).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def findPython(python: str = sys.executable, venvPython: str = VENV_PYTHON) -> Optional[str]:
    """
    @return: the Python to run the servers and load clients with: C{python}
        (this one) if it can run rocketd, else the project's environment
        C{venvPython} if it exists and can, else None.
    """
    for candidate in (python, venvPython):
        if os.path.exists(candidate) and canRunRocketd(candidate):
            return candidate
    return None


def useProjectPython(script: str, argv: List[str], python: str = sys.executable, venvPython: str = VENV_PYTHON,
                     execv=os.execv) -> Optional[str]:
    """
    Make sure the command C{script} (a path relative to the checkout) runs
    under a Python that can run rocketd: if this one cannot, run it again
    with C{argv} under the project's environment (C{execv} does not return).

    @return: None to go on, or the one sentence to stop with, saying how
        to run the command.
    """
    found = findPython(python, venvPython)
    if found is None:
        venv = os.path.relpath(venvPython, ROOT) if venvPython.startswith(ROOT + os.sep) else venvPython
        why = f"neither can {venv}" if os.path.exists(venvPython) else f"there is no {venv}"
        return (f"{script}: {python} cannot run rocketd (it lacks Twisted or another of rocketd's dependencies) "
                f"and {why}: make the project's environment from the checkout with the README's "
                f"{VENV_COMMAND}, then run .venv/bin/python {script} there.")
    if found != python:
        print(f"{script}: running with {found} ({python} cannot run rocketd)", flush=True)
        execv(found, [found, os.path.join(ROOT, script), *argv])
    return None


def freePort() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def fileLimit() -> int:
    """
    Raise this process's open-file limit to its hard limit (children
    inherit it: the servers and the load client need one descriptor per
    connection).

    @return: the limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _httpStatus(port: int, path: str) -> Optional[int]:
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _stop(process: subprocess.Popen, sig: int, timeout: float, name: str) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise ServerError(f"{name} (pid {process.pid}) did not stop within {timeout:g} s; it was killed")


def serverCpu() -> Optional[int]:
    """
    @return: the core the servers are pinned to (the last one), or None on
        a single-core machine.
    """
    cores = sorted(os.sched_getaffinity(0))
    return cores[-1] if len(cores) > 1 else None


class Server:
    """
    What the suite needs of a server under test.

    @ivar name: C{"rocketd"} or C{"nchan"}.
    @ivar port: its listening port (on L{HOST}).
    @ivar process: the started L{subprocess.Popen}.
    @ivar cpu: the core the server process (and its children and threads)
        is pinned to, or None: each server gets one core (rocketd is one
        Python process, nginx runs one worker) and the load client the
        rest; the client may still use the server's core when the server
        leaves it idle.
    """

    name = ""

    def __init__(self, workdir: str, cpu: Optional[int] = None):
        self.workdir = workdir
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self.cpu = cpu

    def _pin(self) -> None:
        """In the child, before exec: run on L{cpu} only."""
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})

    def pids(self) -> List[int]:
        """@return: the pids whose CPU time and memory are the server's."""
        raise NotImplementedError

    def cpuSeconds(self) -> float:
        """@return: the server's CPU seconds so far."""
        return procstat.totalCpu(self.pids())

    def rss(self) -> int:
        """@return: the server's resident memory now, in bytes."""
        return procstat.totalRss(self.pids())

    def logTail(self, lines: int = 20) -> str:
        try:
            with open(self.logPath, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def cleanup(self) -> None:
        """Remove the working directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class RocketdServer(Server):
    """
    C{twistd -n rocketd} from the checkout, with a config that declares
    the vhost L{VHOST} (token in L{token}) and raises C{[restms]
    pipe_depth} to L{PIPE_DEPTH}.
    """

    name = "rocketd"

    def __init__(self, workdir: str, startTimeout: float = 30.0, cpu: Optional[int] = None, settings=()):
        """
        @param settings: more config settings, C{("section.key", value)}
            pairs (e.g. C{("rocketd.front_door", "on")}).
        """
        Server.__init__(self, workdir, cpu)
        self.settings = tuple(settings)
        self.token = secrets.token_hex(20)
        self.startTimeout = startTimeout
        self.logPath = os.path.join(workdir, "rocketd.log")

    def pids(self) -> List[int]:
        return [self.process.pid]

    def config(self) -> str:
        sections = {"rocketd": {}, "restms": {"pipe_depth": PIPE_DEPTH, "feed_backlog": PIPE_DEPTH}}
        for name, value in self.settings:
            section, _, key = name.partition(".")
            sections.setdefault(section, {})[key] = value
        text = ""
        for section, keys in sections.items():
            if keys:
                text += f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items()) + "\n"
        return text + f"[vhost {VHOST}]\ntoken = {self.token}\n"

    def start(self) -> None:
        """
        Start the daemon and wait until it answers HTTP.

        @raise ServerError: it exited or did not answer in time.
        """
        os.makedirs(self.workdir, exist_ok=True)
        configPath = os.path.join(self.workdir, "rocketd.conf")
        with open(configPath, "w") as f:
            f.write(self.config())
        self.port = freePort()
        argv = [
            sys.executable,
            "-c",
            "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "rocketd",
            "--listen",
            f"tcp:{self.port}:interface={HOST}",
            "--admin",
            f"tcp:{freePort()}:interface={HOST}",
            "--state-dir",
            os.path.join(self.workdir, "state"),
            "--config",
            configPath,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        with open(self.logPath, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=self._pin,
            )
        deadline = time.monotonic() + self.startTimeout
        while _httpStatus(self.port, "/restms/domain/") != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"rocketd did not start on port {self.port}:\n{self.logTail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the daemon by its pid: SIGTERM, then SIGKILL after 15 s."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, 15.0, "rocketd")

    def backendAuthorization(self) -> str:
        """@return: the C{Authorization} header of the vhost's backend API."""
        import base64

        return "Basic " + base64.b64encode(f"wr:{self.token}".encode()).decode()


def findNchan() -> Optional[Tuple[str, str]]:
    """@return: (nginx binary, nchan module) if both are installed, else None."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    module = NCHAN_MODULE
    if not os.path.exists(module):
        try:
            listed = subprocess.run(["dpkg", "-L", "libnginx-mod-nchan"], capture_output=True, text=True, timeout=30)
            module = next((p for p in listed.stdout.split() if p.endswith("ngx_nchan_module.so")), None)
        except (OSError, subprocess.SubprocessError):
            module = None
    if nginx and module and os.path.exists(module):
        return nginx, module
    return None


def ensureNchan(install: bool = True, log=print) -> Optional[Tuple[str, str]]:
    """
    Find nginx and the nchan module; if missing and C{install} is true and
    we are root, install the Debian packages with apt-get, keeping the
    package scripts from starting the system nginx service (a temporary
    C{policy-rc.d} that refuses every service start, unless one exists).

    @return: (nginx binary, nchan module), or None if they are not there.
    """
    found = findNchan()
    if found or not install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("nchan is not installed, and installing it needs root and apt-get: skipping nchan")
        return None
    policy = "/usr/sbin/policy-rc.d"
    ownPolicy = not os.path.exists(policy)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if ownPolicy:
            with open(policy, "w") as f:
                f.write("#!/bin/sh\n# Written by rocketd's benchmarks while installing nginx: start no service.\nexit 101\n")
            os.chmod(policy, 0o755)
        command = ["apt-get", "install", "-y", "--no-install-recommends", *NCHAN_PACKAGES]
        log("installing nchan: " + " ".join(command))
        if subprocess.run(command, env=env, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, timeout=900)
            subprocess.run(command, env=env, timeout=900)
    finally:
        if ownPolicy and os.path.exists(policy):
            os.remove(policy)
    return findNchan()


class NchanServer(Server):
    """
    nginx with nchan: C{nginx -p PREFIX -c PREFIX/nginx.conf}, master
    process and one worker, C{daemon off} (so the started process is the
    master), logs and temp files in the prefix.
    """

    name = "nchan"

    def __init__(self, workdir: str, nginx: str, module: str, startTimeout: float = 15.0, cpu: Optional[int] = None):
        Server.__init__(self, workdir, cpu)
        self.nginx = nginx
        self.module = module
        self.startTimeout = startTimeout
        self.logPath = os.path.join(workdir, "error.log")
        self._worker: Optional[int] = None

    def config(self) -> str:
        connections = max(1024, fileLimit() - 64)
        return f"""\
load_module {self.module};
worker_processes 1;
daemon off;
master_process on;
pid {self.workdir}/nginx.pid;
error_log {self.logPath} warn;
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    client_body_temp_path {self.workdir}/client_body;
    proxy_temp_path {self.workdir}/proxy;
    fastcgi_temp_path {self.workdir}/fastcgi;
    uwsgi_temp_path {self.workdir}/uwsgi;
    scgi_temp_path {self.workdir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    server {{
        listen {HOST}:{self.port};
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_id;
        }}
        location = /sub {{
            nchan_subscriber websocket eventsource;
            nchan_channel_id $arg_id;
        }}
    }}
}}
"""

    def pids(self) -> List[int]:
        pids = [self.process.pid]
        if self._worker is not None:
            pids.append(self._worker)
        return pids

    def start(self) -> None:
        """
        Start nginx and wait until its worker answers.

        @raise ServerError: it exited or did not answer in time.
        """
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.port = freePort()
        configPath = os.path.join(self.workdir, "nginx.conf")
        with open(configPath, "w") as f:
            f.write(self.config())
        argv = [self.nginx, "-p", self.workdir + "/", "-c", configPath, "-e", self.logPath]
        with open(os.path.join(self.workdir, "stdout.log"), "ab") as out:
            self.process = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=self._pin,
            )
        deadline = time.monotonic() + self.startTimeout
        while True:
            workers = procstat.childPids(self.process.pid)
            if len(workers) == 1 and _httpStatus(self.port, "/pub?id=nchan-start") is not None:
                self._worker = workers[0]
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"nginx did not start on port {self.port}:\n{self.logTail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop nginx by its master's pid: SIGTERM (fast shutdown), then SIGKILL after 15 s."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, 15.0, "nginx")
