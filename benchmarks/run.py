"""
Run the whole benchmark suite: the same workloads, with the same load
client, against nchan (nginx's pub/sub module) and rocketd, on this
machine, in one run; print the comparison table.

    .venv/bin/python benchmarks/run.py [--repeat 3] [--workloads W1,W2,W3,W4] ...

It runs the servers and load clients with the Python that runs it if that
one can run rocketd, else with the project's environment (C{.venv}, as the
README makes it); without either it stops at once, saying how to run it.

It installs nchan if it is missing (Debian packages, as root), starts a
fresh server for every measurement (nginx with one worker, or
C{twistd -n rocketd}, on a free loopback port, in a temporary directory),
and stops it by its pid. Every loop is bounded in count and time. Exit
status: 0 if every run was valid (no message lost, duplicated or corrupt,
no failed request), 1 otherwise, 2 on a usage error or without a Python
that can run rocketd.

See benchmarks/README.md for the workloads, the figures and how to read
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import driver, report, workloads
from benchmarks.report import Line
from benchmarks.servers import NchanServer, RocketdServer, ensureNchan, fileLimit, serverCpu, useProjectPython
from benchmarks.workloads import Options, Run


@dataclasses.dataclass(frozen=True)
class Case:
    """One thing measured on each of its servers: a workload with its settings."""

    key: str
    workload: str
    label: str
    run: Callable
    servers: Tuple[str, ...] = ("nchan", "rocketd")
    #: Whether C{--profile} records the rocketd server during it.
    profiled: bool = False


CASES = (
    Case("W1-ws", "W1", "W1 fan-out, WebSocket", lambda s, o, d: workloads.fanout(s, "ws", o, d), profiled=True),
    Case("W1-ws-paced", "W1", "W1 fan-out, WebSocket, paced",
         lambda s, o, d: workloads.fanout(s, "ws", o, d, paced=True)),
    Case("W1-sse", "W1", "W1 fan-out, SSE", lambda s, o, d: workloads.fanout(s, "sse", o, d), profiled=True),
    Case("W1-sse-paced", "W1", "W1 fan-out, SSE, paced",
         lambda s, o, d: workloads.fanout(s, "sse", o, d, paced=True)),
    # nchan publishes one way; rocketd's W2 runs with the WebRocket fire-event here
    # and with a RestMS message in W2-restms, both compared with this nchan figure.
    Case("W2", "W2", "W2 publish-only (rocketd: WebRocket event)",
         lambda s, o, d: workloads.publishOnly(s, "ws", o, d), profiled=True),
    Case("W2-restms", "W2", "W2 publish-only (rocketd: RestMS message)",
         lambda s, o, d: workloads.publishOnly(s, "sse", o, d), servers=("rocketd",), profiled=True),
    Case("W3-ws", "W3", "W3 idle WebSocket", lambda s, o, d: workloads.idleConnections(s, "ws", o, d)),
    Case("W3-sse", "W3", "W3 idle SSE", lambda s, o, d: workloads.idleConnections(s, "sse", o, d)),
    Case("W4-1", "W4", "W4 RestMS fifo, 1 pipe", lambda s, o, d: workloads.fifo(s, 1, o, d),
         servers=("rocketd",), profiled=True),
    Case("W4-1-lockstep", "W4", "W4 RestMS fifo, 1 pipe, lock step",
         lambda s, o, d: workloads.fifo(s, 1, dataclasses.replace(o, fifoWindow=1), d), servers=("rocketd",)),
    Case("W4-n", "W4", "W4 RestMS fifo, N pipes", lambda s, o, d: workloads.fifo(s, o.fifoPipes[-1], o, d),
         servers=("rocketd",)),
)


def tableLines(options: Options) -> List[Line]:
    n = options.fifoPipes[-1]
    lines = []
    for case, name in (("W1-ws", "W1 WebSocket"), ("W1-sse", "W1 SSE")):
        lines += [
            Line(f"{name} fan-out: delivered", case, case, "deliveredPerSecond", "msg/s", ratio=0.5),
            Line(f"{name} fan-out: server CPU per delivery", case, case, "cpuPerDelivery", "us",
                 higher=False, ratio=2.0),
            Line(f"{name} fan-out: latency p50 (flat out)", case, case, "p50", "ms", 1e-3, higher=False),
            Line(f"{name} fan-out: latency p99 (flat out)", case, case, "p99", "ms", 1e-3, higher=False),
            Line(f"{name} paced {options.rate:g} msg/s: latency p50", case + "-paced", case + "-paced", "p50", "ms",
                 1e-3, higher=False),
            Line(f"{name} paced {options.rate:g} msg/s: latency p99", case + "-paced", case + "-paced", "p99", "ms",
                 1e-3, higher=False, ratio=2.0),
            Line(f"{name} paced: publishing rate reached", case + "-paced", case + "-paced", "publishedPerSecond",
                 "msg/s"),
            Line(f"{name} paced: server CPU per delivery", case + "-paced", case + "-paced", "cpuPerDelivery", "us",
                 higher=False),
        ]
    for case, name in (("W2", "WebRocket event"), ("W2-restms", "RestMS message")):
        lines += [
            Line(f"W2 publish-only ({name}): publishes", "W2", case, "publishedPerSecond", "msg/s", ratio=0.15),
            Line(f"W2 publish-only ({name}): server CPU per publish", "W2", case, "cpuPerPublish", "us", higher=False),
            Line(f"W2 publish-only ({name}): latency p50", "W2", case, "p50", "ms", 1e-3, higher=False),
            Line(f"W2 publish-only ({name}): latency p99", "W2", case, "p99", "ms", 1e-3, higher=False),
        ]
    lines += [
        Line("W3 idle WebSocket: RSS per connection", "W3-ws", "W3-ws", "rssPerConnection", "KiB", 1 / 1024,
             higher=False, ratio=1.6),
        Line("W3 idle SSE: RSS per connection", "W3-sse", "W3-sse", "rssPerConnection", "KiB", 1 / 1024,
             higher=False, ratio=1.6),
        Line("W4 RestMS fifo, 1 pipe: round trips", None, "W4-1", "roundTripsPerSecond", "rt/s", absolute=2000),
        Line("W4 RestMS fifo, 1 pipe: server CPU per round trip", None, "W4-1", "cpuPerRoundTrip", "us"),
        Line("W4 RestMS fifo, 1 pipe: latency p50 (post to asynclet answer)", None, "W4-1", "p50", "ms", 1e-3),
        Line("W4 RestMS fifo, 1 pipe, lock step: round trips", None, "W4-1-lockstep", "roundTripsPerSecond", "rt/s"),
        Line("W4 RestMS fifo, 1 pipe, lock step: latency p50", None, "W4-1-lockstep", "p50", "ms", 1e-3),
        Line(f"W4 RestMS fifo, {n} pipes: round trips", None, "W4-n", "roundTripsPerSecond", "rt/s"),
        Line(f"W4 RestMS fifo, {n} pipes: messages", None, "W4-n", "messagesPerSecond", "msg/s"),
    ]
    return lines


def parse(argv) -> argparse.Namespace:
    d = Options()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="runs of every case (the table shows medians)")
    p.add_argument("--workloads", default="W1,W2,W3,W4", help="which workloads (or case keys, e.g. W1-sse)")
    p.add_argument("--servers", default="nchan,rocketd", help="which servers")
    p.add_argument("--subscribers", type=int, default=d.subscribers, help="W1 subscribers")
    p.add_argument("--messages", type=int, default=d.messages, help="W1 messages (flat out)")
    p.add_argument("--size", type=int, default=d.size, help="payload bytes")
    p.add_argument("--connections", type=int, default=d.connections, help="keep-alive publishing connections")
    p.add_argument("--rate", type=float, default=d.rate, help="W1 paced publishing rate, messages/s")
    p.add_argument("--paced-messages", type=int, default=d.pacedMessages, help="W1 paced messages")
    p.add_argument("--publish-messages", type=int, default=d.publishMessages, help="W2 messages")
    p.add_argument("--idle", type=int, default=d.idle, help="W3 idle connections")
    p.add_argument("--fifo-messages", type=int, default=d.fifoMessages, help="W4 messages")
    p.add_argument("--fifo-pipes", type=int, default=d.fifoPipes[-1], help="W4 pipes in the second case")
    p.add_argument("--fifo-window", type=int, default=d.fifoWindow,
                   help="W4: how far the publisher may run ahead of the consumers (1 = lock step)")
    p.add_argument("--client-processes", type=int, default=d.clientProcesses,
                   help="load client processes for W1 and W3 (subscribers are split among them)")
    pinned = serverCpu()
    p.add_argument("--server-cpu", type=int, default=-1 if pinned is None else pinned,
                   help="the core each server is pinned to (-1: not pinned); the load clients are not pinned")
    p.add_argument("--seconds", type=float, default=d.seconds, help="time limit of each measured phase")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="seconds to wait at most, before each measurement, for the machine to be idle")
    p.add_argument("--quick", action="store_true",
                   help="tiny counts (seconds, not minutes): for the smoke test, not for figures")
    p.add_argument("--no-install", action="store_true", help="do not install nchan if it is missing")
    p.add_argument("--json", help="also write every run's figures to this file")
    p.add_argument("--profile", metavar="DIR",
                   help="record py-spy profiles of rocketd in W1, W2 and W4-1 into DIR (skews the figures)")
    p.add_argument("--rocketd-set", action="append", default=[], metavar="SECTION.KEY=VALUE", type=_setting,
                   help="a rocketd config setting for the runs (repeatable), e.g. rocketd.front_door=on")
    p.add_argument("--keep", action="store_true", help="keep the servers' working directories (logs, configs)")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (("subscribers", 5), ("messages", 100), ("paced_messages", 50), ("rate", 200),
                            ("publish_messages", 200), ("idle", 20), ("fifo_messages", 50), ("fifo_pipes", 2),
                            ("connections", 2), ("client_processes", 1), ("repeat", 1), ("seconds", 30),
                            ("server_cpu", -1),
                            ("quiet_wait", 0)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    return args


def _setting(text: str):
    name, sep, value = text.partition("=")
    if not sep or "." not in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECTION.KEY=VALUE")
    return name.strip(), value.strip()


def options(args) -> Options:
    return Options(
        subscribers=args.subscribers,
        messages=args.messages,
        size=args.size,
        connections=args.connections,
        rate=args.rate,
        pacedMessages=args.paced_messages,
        publishMessages=args.publish_messages,
        idle=args.idle,
        fifoMessages=args.fifo_messages,
        fifoPipes=(1, args.fifo_pipes),
        fifoWindow=args.fifo_window,
        clientProcesses=args.client_processes,
        seconds=args.seconds,
    )


def selectCases(spec: str) -> List[Case]:
    wanted = {w.strip() for w in spec.split(",") if w.strip()}
    chosen = [c for c in CASES if c.workload in wanted or c.key in wanted]
    unknown = wanted - {c.workload for c in CASES} - {c.key for c in CASES}
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    return chosen


def main(argv=None) -> int:
    args = parse(argv)
    stop = useProjectPython("benchmarks/run.py", sys.argv[1:] if argv is None else list(argv))
    if stop is not None:
        print(stop, file=sys.stderr)
        return 2
    opts = options(args)
    cases = selectCases(args.workloads)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    fileLimit()
    nchan = None
    if "nchan" in servers:
        nchan = ensureNchan(install=not args.no_install, log=lambda m: print(m, flush=True))
        if nchan is None:
            print("nchan is not available: measuring rocketd only", flush=True)
            servers.remove("nchan")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    base = tempfile.mkdtemp(prefix="rocketd-bench-")
    results: Dict[Tuple[str, str], List[Run]] = {}
    started = time.monotonic()
    print(f"machine: {report.machine()}", flush=True)
    try:
        for rep in range(1, args.repeat + 1):
            for case in cases:
                for name in case.servers:
                    if name not in servers:
                        continue
                    run = measure(case, name, rep, opts, args, base, nchan)
                    results.setdefault((case.key, name), []).append(run)
                    print(progress(case, name, rep, run), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    lines = [line for line in tableLines(opts) if any((line.rocketd, s) in results or (line.nchan, s) in results
                                                      for s in ("nchan", "rocketd"))]
    print()
    print(f"## Results: medians of {args.repeat} run(s), {elapsed / 60:.1f} minutes\n")
    print(report.table(lines, results))
    print("\n## Which side saturated (cores: CPU seconds per wall second)\n")
    print(report.saturation([(c.key, c.label) for c in cases if not c.key.startswith("W3")], results))
    invalid = report.invalidRuns(results)
    if invalid:
        print("\n## Runs that did not count\n")
        print(invalid)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": report.machine(),
                    "options": dataclasses.asdict(opts),
                    "runs": [{"case": k[0], "server": k[1], **dataclasses.asdict(r)}
                             for k, runs in results.items() for r in runs],
                    "table": [dict(label=l.label, unit=l.unit, **report.evaluate(l, results)) for l in lines],
                },
                f,
                indent=1,
            )
    allRuns = [r for runs in results.values() for r in runs]
    return 1 if any(r.problems for r in allRuns) else 0


def measure(case: Case, name: str, rep: int, opts: Options, args, base: str, nchan) -> Run:
    """Start a fresh server, run the case on it, stop the server by its pid."""
    if args.quiet_wait > 0:
        driver.waitForQuiet(args.quiet_wait)
    workdir = tempfile.mkdtemp(prefix=f"{case.key}-{name}-{rep}-", dir=base)
    cpu = None if args.server_cpu < 0 else args.server_cpu
    if name == "nchan":
        server = NchanServer(os.path.join(workdir, "nginx"), *nchan, cpu=cpu)
    else:
        server = RocketdServer(os.path.join(workdir, "rocketd"), cpu=cpu, settings=args.rocketd_set)
    if args.profile and case.profiled and name == "rocketd":
        opts = dataclasses.replace(opts, profile=os.path.join(os.path.abspath(args.profile), f"{case.key}-{rep}.txt"))
    try:
        server.start()
    except Exception as e:
        return Run(problems=[f"the server did not start: {e}"])
    try:
        return case.run(server, opts, workdir)
    except Exception as e:
        return Run(problems=[f"{type(e).__name__}: {e}"])
    finally:
        try:
            server.stop()
        except Exception as e:
            print(f"warning: {e}", file=sys.stderr)


def progress(case: Case, name: str, rep: int, run: Run) -> str:
    if run.pending:
        state = f"pending: {run.pending}"
    else:
        figures = ", ".join(f"{k}={v:,.1f}" for k, v in run.figures.items())
        state = figures if run.valid else f"INVALID ({'; '.join(run.problems)[:200]}) {figures}"
    loads = (f" [load: server {run.serverLoad:.2f}, busiest client {run.clientLoad:.2f}, "
             f"all clients {run.clientsLoad:.2f}, other {run.otherLoad:.2f}]") if run.serverLoad else ""
    return f"{case.key:<12} {name:<8} run {rep}: {state}{loads}"


if __name__ == "__main__":
    sys.exit(main())
