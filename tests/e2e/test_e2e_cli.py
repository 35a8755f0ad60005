"""``aiapi up``, the README's first command: the whole gateway on one machine with an embedded Redis,
answering the openai SDK, spreading connections over its API processes, replacing one that dies, and
leaving nothing of what it started running once it is stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.harness import REPO, free_port

pytestmark = pytest.mark.e2e


def _wait_until_it_answers(root: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90  # a process per core starting at once, on a busy machine
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{root}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"aiapi up did not become ready:\n{log.read_text(errors='replace')}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_and_stops_everything_it_started(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    config = tmp_path / "aiapi.toml"
    config.write_text(f'[redis]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name not in ("REDIS_URL", "AIAPI_CONFIG")}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "--config", str(config), "up", "--port", str(port), "--workers", "2"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )
    started: list[psutil.Process] = []
    try:
        _wait_until_it_answers(f"http://127.0.0.1:{port}", process, log)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0) as sdk:
            messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
            chunks = sdk.chat.completions.create(model="mock-1", messages=messages, stream=True)
            assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        started = psutil.Process(process.pid).children(recursive=True)
        names = sorted(" ".join(child.cmdline()) for child in started)
        workers = [name for name in names if "shared.cli" in name and name.endswith(" worker")]
        assert len(workers) == 2 and any("redis-server" in name for name in names), names
        process.send_signal(stop)
        assert process.wait(timeout=30) == 0
        _, running = psutil.wait_procs(started, timeout=10)
        assert not running, f"left running after {stop.name}: {[child.cmdline() for child in running]}"
    finally:
        if process.poll() is None:
            started += psutil.Process(process.pid).children(recursive=True)
            process.kill()
        for child in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def _chat(root: str) -> None:
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    # a new connection each time, for the kernel to hand to either API process
    answer = httpx.post(f"{root}/v1/chat/completions", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def _served_by(log: Path) -> set[int]:
    """The pids that logged an answer (the log line's third field is the process id)."""
    return {int(line.split()[3]) for line in log.read_text(errors="replace").splitlines() if " aiapi.access " in line}


def _chat_requests_counted(root: str) -> float:
    text = httpx.get(f"{root}/metrics", timeout=5).text
    route = 'route="/v1/chat/completions"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aiapi_http_requests_total{") and route in line
    )


def test_up_spreads_connections_over_api_processes_and_restarts_a_dead_one(tmp_path: Path) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    config = tmp_path / "aiapi.toml"
    config.write_text(f'[redis]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name not in ("REDIS_URL", "AIAPI_CONFIG")}
    log = tmp_path / "up.log"
    argv = ["--config", str(config), "up", "--port", str(port), "--api-processes", "2", "--workers", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *argv], cwd=REPO, env=env, stdout=out, stderr=out
        )
    supervisor = psutil.Process(process.pid)

    def apis() -> list[psutil.Process]:
        return [child for child in supervisor.children() if child.cmdline()[-2:] == ["api", "--reuse-port"]]

    started: list[psutil.Process] = []
    try:
        _wait_until_it_answers(root, process, log)
        first = apis()
        assert len(first) == 2
        metrics_dir = Path(first[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
        # Both processes take connections; /metrics on either counts the answers of both.
        deadline = time.monotonic() + 60
        sent = 0
        while _served_by(log) != {api.pid for api in first} and time.monotonic() < deadline:
            _chat(root)
            sent += 1
        assert _served_by(log) == {api.pid for api in first}, _served_by(log)
        assert _chat_requests_counted(root) == sent
        # A killed API process is replaced; the other one serves meanwhile, and no request fails.
        first[0].kill()
        first[0].wait(timeout=10)  # gone, with its socket: a connection queued on it would be reset
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _chat(root)
            sent += 1
            replaced = {api.pid for api in apis()} - {api.pid for api in first}
            if replaced and replaced <= _served_by(log):
                break
        assert replaced and replaced <= _served_by(log), log.read_text(errors="replace")[-3000:]
        assert "api 1 ended unexpectedly" in log.read_text(errors="replace")
        assert _chat_requests_counted(root) == sent  # the dead process's answers still counted
        started = supervisor.children(recursive=True)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        _, running = psutil.wait_procs(started, timeout=10)
        assert not running, [child.cmdline() for child in running]
        assert not metrics_dir.exists()
    finally:
        if process.poll() is None:
            started += supervisor.children(recursive=True)
            process.kill()
        for child in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
