"""``/metrics`` in multiprocess mode: the figures of every API process sharing the directory, summed.

prometheus-client picks its mode when it is imported, so each process here is a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from tests.harness import REPO

_PROCESS = """
import sys
from api.metrics import IN_FLIGHT, REQUESTS, exposition, generations_in_flight
REQUESTS.labels(route="/v1/chat/completions", method="POST", status="200").inc(int(sys.argv[1]))
IN_FLIGHT.set(int(sys.argv[2]))
if sys.argv[3] == "report":
    print(generations_in_flight())
    sys.stdout.write(exposition().decode())
"""


def _process(directory: Path | None, requests: int, in_flight: int, report: bool) -> str:
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    argv = [sys.executable, "-c", _PROCESS, str(requests), str(in_flight), "report" if report else "-"]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def _requests(exposition: str) -> float:
    (line,) = (line for line in exposition.splitlines() if line.startswith("aiapi_http_requests_total{"))
    return float(line.rsplit(" ", 1)[1])


def test_each_process_alone_reports_its_own_figures() -> None:
    out = _process(None, 2, 3, True)
    assert out.startswith("3\n") and _requests(out) == 2


def test_processes_sharing_a_directory_report_the_sum_and_a_dead_ones_gauge_is_dropped(tmp_path: Path) -> None:
    first = subprocess.Popen(  # ends without reporting: its figures stay in the directory
        [sys.executable, "-c", _PROCESS, "2", "3", "-"],
        cwd=REPO,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    assert first.wait(timeout=60) == 0
    out = _process(tmp_path, 1, 1, True)
    assert out.startswith("4\n") and _requests(out) == 3
    mark_process_dead(first.pid, path=str(tmp_path))
    out = _process(tmp_path, 0, 1, True)
    # the first's count stays, its in-flight gauge is gone (the second's stays: nobody marked it dead)
    assert out.startswith("2\n") and _requests(out) == 3
