"""``aiapi up``, the README's first command: the whole gateway on one machine with an embedded Redis,
answering the openai SDK, and leaving nothing of what it started running once it is stopped."""

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
    deadline = time.monotonic() + 30
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
        process.wait(timeout=30)
        _, running = psutil.wait_procs(started, timeout=10)
        assert not running, f"left running after {stop.name}: {[child.cmdline() for child in running]}"
    finally:
        if process.poll() is None:
            started += psutil.Process(process.pid).children(recursive=True)
            process.kill()
        for child in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
