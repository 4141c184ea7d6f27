"""
Drives load client processes against a running server and measures the
server from the outside: CPU time and resident memory from C{/proc},
between the moment every client is ready and the moment every client has
its result.

    measurement = drive(server, [config, ...], workdir, timeout)

Each config is a L{benchmarks.loadclient} config; each runs in its own
child process. The clients report their own CPU time for the same window,
so the measurement says which side was busy.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import List, Optional

from benchmarks import procstat
from benchmarks.servers import ROOT, Server

class ClientError(RuntimeError):
    """A load client failed, or did not answer in time."""


class ClientProcess:
    """One load client child process and its JSON-line conversation."""

    def __init__(self, config: dict, workdir: str, index: int):
        self.configPath = os.path.join(workdir, f"client-{index}.json")
        self.stderrPath = os.path.join(workdir, f"client-{index}.err")
        with open(self.configPath, "w") as f:
            json.dump(config, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        with open(self.stderrPath, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.loadclient", self.configPath],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._buffer = b""

    def read(self, deadline: float) -> tuple:
        """
        @return: the next message, as (kind, value).
        @raise ClientError: the client exited, said C{error}, or said
            nothing before C{deadline} (C{time.monotonic()}).
        """
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError(f"the load client said nothing in time{self._stderr()}")
            readable, _, _ = select.select([fd], [], [], min(left, 1.0))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise ClientError(f"the load client exited ({self.process.wait()}){self._stderr()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        kind, value = next(iter(message.items()))
        if kind == "error":
            raise ClientError(f"the load client failed: {value}{self._stderr()}")
        return kind, value

    def expect(self, kind: str, deadline: float):
        got, value = self.read(deadline)
        if got != kind:
            raise ClientError(f"the load client said {got!r}, not {kind!r}")
        return value

    def send(self, word: str) -> None:
        try:
            self.process.stdin.write(word.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def finish(self, timeout: float = 30.0) -> None:
        """Close its stdin (it exits), then wait; kill it by its pid if it does not."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process.stdout.close()

    def _stderr(self) -> str:
        try:
            with open(self.stderrPath, "rb") as f:
                text = f.read()[-2000:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"\n{text}" if text else ""


@dataclass
class Measurement:
    """
    What one drive measured.

    @ivar results: each client's result (see L{benchmarks.loadclient.run}).
    @ivar serverCpu: the server's CPU seconds between go and the last result.
    @ivar wall: seconds between go and the last result.
    @ivar rssBefore: the server's RSS before the clients connected (bytes).
    @ivar rssReady: the server's RSS once every client was ready.
    @ivar machineCpu: the CPU seconds the whole machine was busy in
        that time (the server, the clients and anything else).
    @ivar latencies: every delivery latency (ns), sorted.
    @ivar publishLatencies: every publish request's latency (ns), sorted.
    """

    results: List[dict]
    serverCpu: float
    wall: float
    rssBefore: int
    rssReady: int
    machineCpu: float = 0.0
    latencies: array = field(default_factory=lambda: array("q"))
    publishLatencies: array = field(default_factory=lambda: array("q"))

    def total(self, key: str) -> int:
        return sum(r[key] for r in self.results)

    @property
    def problems(self) -> List[str]:
        """@return: why the run is invalid (lost, duplicated, corrupt messages, errors); [] if valid."""
        out = []
        for key in ("missing", "duplicates", "corrupt"):
            if self.total(key):
                out.append(f"{self.total(key)} {key}")
        for r in self.results:
            out.extend(r["errors"][:3])
        return out

    @property
    def firstPublish(self) -> int:
        return min((r["firstPublish"] for r in self.results if r["firstPublish"]), default=0)

    @property
    def lastPublish(self) -> int:
        return max(r["lastPublish"] for r in self.results)

    @property
    def lastDelivery(self) -> int:
        return max(r["lastDelivery"] for r in self.results)

    @property
    def lastResponse(self) -> int:
        return max(r["lastResponse"] for r in self.results)

    @property
    def serverLoad(self) -> float:
        """@return: the server's CPU seconds per wall second (1.0 = one core)."""
        return self.serverCpu / self.wall if self.wall else 0.0

    @property
    def otherLoad(self) -> float:
        """@return: the CPU seconds per wall second of everything but the server and the clients."""
        if not self.wall:
            return 0.0
        clients = sum(r["cpu"] for r in self.results)
        return max(0.0, (self.machineCpu - self.serverCpu - clients) / self.wall)

    @property
    def clientsLoad(self) -> float:
        """@return: all client processes' CPU seconds per wall second."""
        return sum(r["cpu"] for r in self.results) / self.wall if self.wall else 0.0

    @property
    def clientLoad(self) -> float:
        """@return: the busiest client process's CPU seconds per wall second."""
        return max((r["cpu"] / r["wall"] for r in self.results if r["wall"]), default=0.0)


class Profiler:
    """
    py-spy sampling one process from construction to L{stop}, into a
    collapsed-stack file. py-spy pauses the process for each sample (a few
    per cent of its time at this rate): without pausing, a third of the
    samples come out torn.
    """

    RATE = 250

    def __init__(self, pid: int, path: str):
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if not os.path.exists(spy):
            raise ClientError("py-spy is not installed (pip install py-spy)")
        self.path = path
        self._log = open(path + ".log", "wb")
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(self.RATE), "--format", "raw",
             "--output", path],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        # py-spy needs a moment to attach; a sample lost at the start is no harm.
        time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop sampling (SIGINT: py-spy writes its file) and wait for it, by its pid."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def percentile(ordered, p: float) -> float:
    """@return: the C{p} quantile (0..1) of sorted samples, or NaN if none."""
    if not len(ordered):
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _load(paths) -> array:
    samples = array("q")
    for path in paths:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                samples.frombytes(f.read())
    return array("q", sorted(samples))


def drive(
    server: Server, configs: List[dict], workdir: str, timeout: float, idle: bool = False, profile: Optional[str] = None
) -> Measurement:
    """
    Run one client process per config against C{server}: wait until all
    are ready, tell them to go, collect their results.

    @param timeout: the longest the whole drive may take, in seconds
        (setup included).
    @param idle: the clients hold their connections without traffic;
        the server's RSS is read once they are all ready, and they are
        told to stop after their results.
    @param profile: a file to write a py-spy profile of the server's
        first process to (collapsed stacks), from go to the last result;
        None for none.
    @return: the L{Measurement}.
    @raise ClientError: a client failed or did not answer in time.
    """
    for index, config in enumerate(configs):
        config.setdefault("latencyFile", os.path.join(workdir, f"latency-{index}.bin"))
        config.setdefault("publishLatencyFile", os.path.join(workdir, f"publish-latency-{index}.bin"))
        config["idle"] = idle
    deadline = time.monotonic() + timeout
    rssBefore = server.rss()
    clients = [ClientProcess(config, workdir, index) for index, config in enumerate(configs)]
    try:
        for client in clients:
            client.expect("ready", deadline)
        rssReady = server.rss()
        profiler = Profiler(server.pids()[0], profile) if profile else None
        busy0, cpu0, t0 = procstat.machineBusy(), server.cpuSeconds(), time.monotonic()
        for client in clients:
            client.send("go")
        results = [client.expect("result", deadline) for client in clients]
        busy1, cpu1, t1 = procstat.machineBusy(), server.cpuSeconds(), time.monotonic()
        if profiler is not None:
            profiler.stop()
        for client in clients:
            client.send("stop")
    finally:
        for client in clients:
            client.finish()
    return Measurement(
        results=results,
        serverCpu=cpu1 - cpu0,
        wall=t1 - t0,
        rssBefore=rssBefore,
        rssReady=rssReady,
        machineCpu=busy1 - busy0,
        latencies=_load(c["latencyFile"] for c in configs),
        publishLatencies=_load(c["publishLatencyFile"] for c in configs),
    )


def waitForQuiet(maxSeconds: float, threshold: float = 0.15, window: float = 1.0) -> float:
    """
    Wait until the machine is nearly idle (other work would skew the
    figures): at most C{maxSeconds}, in windows of C{window} seconds.

    @param threshold: the busy cores (CPU seconds per second) below which
        the machine counts as quiet.
    @return: the busy cores of the last window.
    """
    end = time.monotonic() + maxSeconds
    while True:
        busy0, t0 = procstat.machineBusy(), time.monotonic()
        time.sleep(window)
        load = (procstat.machineBusy() - busy0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= end:
            return load
