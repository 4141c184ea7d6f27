"""
What the kernel says a process has used: CPU time and resident memory,
read from C{/proc} (Linux only).
"""

from __future__ import annotations

import os
from typing import Iterable, List

_TICKS = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int, children: bool = True) -> float:
    """
    @param children: also count the waited-for children's time
        (C{cutime + cstime}).
    @return: the CPU time (user + system) the process has used, in
        seconds, with the clock-tick resolution (usually 10 ms).
    @raise OSError: no such process.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    # Fields 14-17 of proc(5): utime, stime, cutime, cstime; fields[0] is field 3.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def rssBytes(pid: int) -> int:
    """
    @return: the process's resident set size (C{VmRSS}: anonymous, file
        and shared memory pages it has touched), in bytes.
    @raise OSError: no such process.
    """
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def childPids(pid: int) -> List[int]:
    """@return: the process's children (every thread's), or [] if it is gone."""
    pids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def totalCpu(pids: Iterable[int]) -> float:
    """@return: the CPU seconds of several processes (and their children); gone ones count 0."""
    total = 0.0
    for pid in pids:
        try:
            total += cpuSeconds(pid)
        except OSError:
            pass
    return total


def totalRss(pids: Iterable[int]) -> int:
    """@return: the summed resident set sizes of several processes; gone ones count 0."""
    total = 0
    for pid in pids:
        try:
            total += rssBytes(pid)
        except OSError:
            pass
    return total


def machineBusy() -> float:
    """
    @return: the CPU seconds all cores have spent busy since boot (every
        state of C{/proc/stat}'s C{cpu} line but idle and iowait; steal
        counts as busy: another guest had the core).
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice;
    # guest time is already counted in user.
    values = [int(v) for v in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS
