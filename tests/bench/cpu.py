"""CPU time of processes, read from ``/proc``: a cost per request that machine noise hardly moves."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ("CpuMeter", "cpu_seconds")

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and of its children that ended, in seconds."""
    # The command name (field 2) may hold spaces; the numbered fields start after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


class CpuMeter:
    """CPU seconds that a set of processes spend between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._start = 0.0
        self.seconds = 0.0

    def start(self) -> None:
        self._start = sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> float:
        self.seconds = sum(cpu_seconds(pid) for pid in self.pids) - self._start
        return self.seconds
