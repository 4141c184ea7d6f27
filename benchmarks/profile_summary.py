"""
Summarise a py-spy profile: the functions with the most samples by self
time (the function was on top of the stack; native code, system calls
included, counts for the Python function that called it), the same by
area (rocketd's modules, twisted.web, the reactor, klein...), and the
total time (anywhere on the stack) of rocketd's own functions.

    python benchmarks/profile_summary.py PROFILE [--top N] [--markdown]

PROFILE is py-spy's C{--format raw} output (collapsed stacks: one line per
stack, frames separated by C{;}, then a space and the sample count), as
C{benchmarks/run.py --profile DIR} records it.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
from typing import Dict, List, Tuple

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def _short(frame: str, withLine: bool) -> str:
    """C{render (twisted/web/server.py:123)} -> C{twisted/web/server.py:render}."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    name = f"{path}:{m.group('function')}"
    if withLine and m.group("line"):
        name += f":{m.group('line')}"
    return name


def load(path: str) -> List[Tuple[List[str], int]]:
    """@return: (frames from the outermost, samples) per stack of a collapsed-stack file."""
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                samples = int(count)
            except ValueError:
                continue
            frames = [frame for frame in stack.split(";") if frame]
            # py-spy puts the thread ("process 123:..." / "thread (0x...)") first.
            frames = [frame for frame in frames if not frame.startswith(("process ", "thread "))]
            stacks.append((frames, samples))
    return stacks


#: Where a frame's file belongs, first match wins: (path prefix, area).
AREAS = (
    ("rocketd/", None),  # rocketd/<package>/<module>: named by its module
    ("twisted/web/", "twisted.web (HTTP)"),
    ("twisted/internet/", "twisted.internet (reactor, TCP, Deferreds)"),
    ("twisted/python/", "twisted.python (log context, syscall retry)"),
    ("twisted/protocols/", "twisted.protocols (line parsing)"),
    ("twisted/", "twisted (other)"),
    ("klein/", "klein"),
    ("werkzeug/", "werkzeug (klein's routing)"),
    ("autobahn/", "autobahn (WebSocket)"),
    ("txaio/", "autobahn (WebSocket)"),
    ("zope/", "zope.interface"),
    ("json/", "json"),
    ("lxml/", "lxml"),
)


def area(name: str) -> str:
    """@return: the area of a shortened frame name (see L{_short})."""
    for prefix, label in AREAS:
        if name.startswith(prefix):
            if label is None:
                return name.split(":", 1)[0].replace("/", ".").removesuffix(".py")
            return label
    return "Python stdlib and other"


def summarize(stacks, withLine: bool = False) -> Tuple[int, Dict[str, int], Dict[str, int], Dict[str, int]]:
    """
    @return: total samples, and samples by function on top of the stack
        (self), by function anywhere on the stack (total), and by area of
        the function on top of the stack.
    """
    total = 0
    own: Dict[str, int] = collections.Counter()
    inclusive: Dict[str, int] = collections.Counter()
    areas: Dict[str, int] = collections.Counter()
    for frames, samples in stacks:
        total += samples
        if not frames:
            areas["(no stack)"] += samples
            continue
        names = [_short(frame, withLine) for frame in frames]
        own[names[-1]] += samples
        areas[area(names[-1])] += samples
        for name in set(names):
            inclusive[name] += samples
    return total, own, inclusive, areas


def report(path: str, top: int = 15, markdown: bool = False) -> str:
    """
    @return: three tables: self time by function, self time by area, and
        total time of rocketd's own functions (what each entry point costs
        with everything it calls).
    """
    total, own, inclusive, areas = summarize(load(path))
    rocketd = collections.Counter({k: v for k, v in inclusive.items() if k.startswith("rocketd/")})
    sections = [
        ("self time, by function", own.most_common(top)),
        ("self time, by area", areas.most_common(top)),
        ("total time (with callees), rocketd's functions", rocketd.most_common(top)),
    ]
    lines = [f"{os.path.basename(path)}: {total} samples" if not markdown else f"`{os.path.basename(path)}`: {total} samples"]
    for title, rows in sections:
        lines.append("")
        if markdown:
            lines.append(f"| % | {title} |")
            lines.append("|---:|---|")
            lines.extend(f"| {100 * n / total:.1f} | `{name}` |" for name, n in rows)
        else:
            lines.append(f"{'%':>6}  {title}")
            lines.extend(f"{100 * n / total:6.1f}  {name}" for name, n in rows)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("profiles", nargs="+")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    for path in args.profiles:
        print(report(path, args.top, args.markdown))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
