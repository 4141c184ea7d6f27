"""
The comparison table: medians of the valid runs of each case, nchan next
to rocketd, their ratio and the target; then which side saturated, and
the runs that did not count.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.workloads import Run


@dataclass(frozen=True)
class Line:
    """
    One line of the table.

    @ivar nchan: the case whose nchan runs give the nchan figure (or None).
    @ivar rocketd: the case whose rocketd runs give the rocketd figure.
    @ivar metric: the figure's name in L{Run.figures}.
    @ivar scale: what the figure is multiplied by to show it.
    @ivar higher: whether a higher figure is better.
    @ivar ratio: the target ratio rocketd/nchan (at least it if
        C{higher}, at most it otherwise), or None.
    @ivar absolute: the target for rocketd's figure itself, or None.
    """

    label: str
    nchan: Optional[str]
    rocketd: str
    metric: str
    unit: str
    scale: float = 1.0
    higher: bool = True
    ratio: Optional[float] = None
    absolute: Optional[float] = None


def median(runs: Sequence[Run], metric: str) -> Optional[float]:
    values = [r.figures[metric] for r in runs if r.valid and metric in r.figures and not math.isnan(r.figures[metric])]
    return statistics.median(values) if values else None


def _format(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _target(line: Line) -> str:
    if line.absolute is not None:
        return f">= {line.absolute:,.0f}"
    if line.ratio is None:
        return ""
    return f"{'>=' if line.higher else '<='} {line.ratio:g}x"


def evaluate(line: Line, results: Dict[Tuple[str, str], List[Run]]) -> dict:
    """@return: the line's figures: nchan, rocketd, ratio, met (True, False or None)."""
    n = median(results.get((line.nchan, "nchan"), []), line.metric) if line.nchan else None
    r = median(results.get((line.rocketd, "rocketd"), []), line.metric)
    n = n * line.scale if n is not None else None
    r = r * line.scale if r is not None else None
    ratio = r / n if n and r is not None else None
    met = None
    if line.absolute is not None and r is not None:
        met = r >= line.absolute
    elif line.ratio is not None and ratio is not None:
        met = ratio >= line.ratio if line.higher else ratio <= line.ratio
    return {"nchan": n, "rocketd": r, "ratio": ratio, "met": met}


def _pending(case: Optional[str], server: str, results) -> str:
    runs = results.get((case, server), [])
    reasons = {r.pending for r in runs if r.pending}
    return f"pending: {reasons.pop()}" if reasons else ""


def table(lines: Sequence[Line], results: Dict[Tuple[str, str], List[Run]]) -> str:
    """@return: the comparison table, as Markdown."""
    out = [
        "| workload, figure | unit | nchan | rocketd | rocketd/nchan | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    notes = []
    for line in lines:
        e = evaluate(line, results)
        met = {True: "yes", False: "**no**", None: ""}[e["met"]]
        rocketd = _format(e["rocketd"])
        pending = _pending(line.rocketd, "rocketd", results)
        if e["rocketd"] is None and pending:
            rocketd = "pending"
            if pending not in notes:
                notes.append(pending)
        nchan = _format(e["nchan"]) if line.nchan else "n/a"
        ratio = f"{e['ratio']:.2f}x" if e["ratio"] is not None else "-"
        out.append(f"| {line.label} | {line.unit} | {nchan} | {rocketd} | {ratio} | {_target(line)} | {met} |")
    text = "\n".join(out)
    if notes:
        text += "\n\n" + "\n".join(f"- {note}" for note in notes)
    return text


#: A process using this share of a core counts as saturated (the
#: clock-tick resolution blurs the figure).
SATURATED = 0.85


def verdict(server: float, client: float, clients: float, other: float, cores: int) -> str:
    """
    @param server: the server's load (cores).
    @param client: the busiest client process's load.
    @param clients: all client processes' load.
    @param other: everything else's load.
    @return: which side limited the run.
    """
    if server >= SATURATED:
        return "server"
    if client >= SATURATED:
        return "client"
    if server + clients + other >= SATURATED * cores:
        return "machine full (client side)" if other < 0.3 else "machine full (other load)"
    if server >= 0.7:
        return "mostly server (not quite saturated)"
    return "neither (latency-bound)"


def saturation(cases: Sequence[Tuple[str, str]], results: Dict[Tuple[str, str], List[Run]]) -> str:
    """
    @param cases: (case, label) of the cases with traffic.
    @return: a Markdown table of median loads (cores: CPU seconds per
        second) of the server, the busiest client process, all client
        processes and everything else on the machine, per case and server,
        with which side limited the run.
    """
    cores = os.cpu_count() or 1
    out = [
        "| case | server | server load | busiest client | all clients | other load | limited by |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for case, label in cases:
        for server in ("nchan", "rocketd"):
            runs = [r for r in results.get((case, server), []) if r.valid]
            if not runs:
                continue
            s = statistics.median(r.serverLoad for r in runs)
            c = statistics.median(r.clientLoad for r in runs)
            a = statistics.median(r.clientsLoad for r in runs)
            o = statistics.median(r.otherLoad for r in runs)
            out.append(f"| {label} | {server} | {s:.2f} | {c:.2f} | {a:.2f} | {o:.2f} | {verdict(s, c, a, o, cores)} |")
    return "\n".join(out)


def invalidRuns(results: Dict[Tuple[str, str], List[Run]]) -> str:
    """@return: one line per run that did not count (invalid or failed), or ""."""
    out = []
    for (case, server), runs in sorted(results.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        for index, run in enumerate(runs, 1):
            if run.problems:
                out.append(f"- {case} on {server}, run {index}: INVALID: {'; '.join(run.problems)[:300]}")
    return "\n".join(out)


def _first(path: str, prefix: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _packageVersion(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "not installed"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> str:
    """@return: one paragraph describing the machine and the software measured."""
    memory = _first("/proc/meminfo", "MemTotal")
    return (
        f"{_first('/proc/cpuinfo', 'model name')}, {os.cpu_count()} cores, {memory} RAM; "
        f"Linux {platform.release()}; CPython {platform.python_version()}; "
        f"nginx {_packageVersion('nginx')} with libnginx-mod-nchan {_packageVersion('libnginx-mod-nchan')}"
    )
