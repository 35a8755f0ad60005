"""The supervisor behind ``aiapi up``: restarts with backoff, stops stage by stage, a second signal kills."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.supervisor import Role, Supervisor, backoff_s

# A child that notes each start and the SIGTERM it gets in a file, then ends ``exit_s`` after the SIGTERM
# (or at once, ``dies`` times, when it starts: a crash).
_CHILD = """
import os, signal, sys, time
notes, exit_s, dies = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def note(what):
    with open(notes, "a") as out:
        out.write(f"{what} {time.monotonic()}\\n")
starts = sum(1 for line in open(notes) if line.startswith("start")) if os.path.exists(notes) else 0
def stop(signum, frame):
    note("term")
    time.sleep(exit_s)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, signal.SIG_IGN)
note("start")
if starts < dies:
    sys.exit(3)
while True:
    time.sleep(1)
"""


def _role(tmp_path: Path, name: str, stage: int, *, exit_s: float = 0.0, dies: int = 0, stop_s: float = 10) -> Role:
    argv = [sys.executable, "-c", _CHILD, str(tmp_path / f"{name}.notes"), str(exit_s), str(dies)]
    return Role(name, argv, dict(os.environ), stage, stop_s, on_exit=lambda pid: None)


def _notes(tmp_path: Path, name: str) -> list[tuple[str, float]]:
    lines = (tmp_path / f"{name}.notes").read_text().split()
    return [(lines[i], float(lines[i + 1])) for i in range(0, len(lines), 2)]


def _signal_once_started(
    tmp_path: Path, starts: dict[str, int], *, signum: signal.Signals = signal.SIGTERM, times: int = 1
) -> None:
    """Signal this process (the supervisor) once each child named has started as often as given (a child
    sets its handlers before it notes a start), then again every half second, ``times`` in all."""

    def started(name: str) -> int:
        notes = tmp_path / f"{name}.notes"
        return sum(1 for what, _ in _notes(tmp_path, name) if what == "start") if notes.exists() else 0

    def send() -> None:
        while any(started(name) < count for name, count in starts.items()):
            time.sleep(0.05)
        for _ in range(times):
            os.kill(os.getpid(), signum)
            time.sleep(0.5)

    threading.Thread(target=send, daemon=True).start()


def test_backoff_grows_to_a_ceiling() -> None:
    assert [backoff_s(n) for n in range(1, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stops_stage_by_stage_and_returns_0(tmp_path: Path, signum: signal.Signals) -> None:
    supervisor = Supervisor([_role(tmp_path, "first", 0, exit_s=0.5), _role(tmp_path, "second", 1)])
    assert supervisor.run(lambda: _signal_once_started(tmp_path, {"first": 1, "second": 1}, signum=signum)) == 0
    first, second = _notes(tmp_path, "first"), _notes(tmp_path, "second")
    assert [what for what, _ in first] == ["start", "term"] and [what for what, _ in second] == ["start", "term"]
    # the second stage is told to stop only once the first has ended, half a second after its SIGTERM
    assert second[1][1] - first[1][1] >= 0.5


def test_a_child_that_dies_is_restarted_after_a_backoff(tmp_path: Path) -> None:
    ended: list[int] = []
    role = _role(tmp_path, "flaky", 0, dies=2)
    role = Role(role.name, role.argv, role.env, role.stage, role.stop_timeout_s, on_exit=ended.append)
    assert Supervisor([role]).run(lambda: _signal_once_started(tmp_path, {"flaky": 3})) == 0
    starts = [at for what, at in _notes(tmp_path, "flaky") if what == "start"]
    assert len(starts) == 3, starts
    # two quick deaths: 0.5 s, then 1 s before the restarts (plus the start-up of a Python process)
    assert starts[2] - starts[1] >= 1.0 and starts[1] - starts[0] >= 0.5
    assert len(ended) == 3  # the two deaths and the stop, each reported once


def test_a_second_signal_kills_what_is_still_draining(tmp_path: Path) -> None:
    started = time.monotonic()
    supervisor = Supervisor([_role(tmp_path, "slow", 0, exit_s=60, stop_s=60)])
    assert supervisor.run(lambda: _signal_once_started(tmp_path, {"slow": 1}, times=2)) == 0
    assert time.monotonic() - started < 10
    assert [what for what, _ in _notes(tmp_path, "slow")] == ["start", "term"]


def test_a_child_past_its_stop_timeout_is_killed(tmp_path: Path) -> None:
    started = time.monotonic()
    supervisor = Supervisor([_role(tmp_path, "stuck", 0, exit_s=60, stop_s=1)])
    assert supervisor.run(lambda: _signal_once_started(tmp_path, {"stuck": 1})) == 0
    assert time.monotonic() - started < 10
