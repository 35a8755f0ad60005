"""Operating the gateway: health and readiness probes, and input limits, through real processes."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import redis

from shared import keys
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e


def _root(gateway: GatewayProcesses) -> str:
    return gateway.base_url.removesuffix("/v1")


def test_probes_report_a_ready_gateway(gateway: GatewayProcesses) -> None:
    assert httpx.get(f"{_root(gateway)}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{_root(gateway)}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    ledger = body.pop("ledger")  # how far behind the recorder is: this gateway runs none
    assert body == {"status": "ready", "redis": "ok", "workers": "ok"}
    assert set(ledger) == {"records", "oldest_age_s"} and ledger["records"] >= 0


def test_without_workers_the_gateway_is_alive_but_not_ready(redis_url: str) -> None:
    config = '[[channels]]\nname = "m"\ntype = "mock"\nmodels = ["mock-1"]\n'
    with GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0) as gateway:
        assert httpx.get(f"{_root(gateway)}/healthz").status_code == 200
        ready = httpx.get(f"{_root(gateway)}/readyz")
        assert ready.status_code == 503 and ready.json()["workers"] == "none alive"


def test_oversized_requests_are_refused_before_queueing(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "x"}] * 2049
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock-1", messages=messages)
    assert caught.value.code == "too_many_messages"
    tools: Any = [{"type": "function", "function": {"name": f"t{i}", "parameters": {}}} for i in range(129)]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "x"}], tools=tools)
    assert caught.value.code == "too_many_tools"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock-1", input=[{"role": "user", "content": "x"}] * 2049)
    assert caught.value.code == "too_many_messages" and caught.value.param == "input"


def test_a_body_over_the_size_limit_is_413(gateway: GatewayProcesses) -> None:
    body = b'{"model":"mock-1","messages":[{"role":"user","content":"' + b"x" * (11 * 1024 * 1024) + b'"}]}'
    reply = httpx.post(
        f"{gateway.base_url}/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_a_stream_waiting_for_a_worker_is_kept_alive(redis_url: str) -> None:
    config = (
        "[relay]\nkeepalive_s = 0.5\nqueue_timeout_s = 30\n"
        '[[channels]]\nname = "m"\ntype = "mock"\nmodels = ["mock-1"]\nreply = "at last"\n'
    )
    processes = GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0)
    with redis.Redis.from_url(processes.redis_url) as seen:  # workers restarting: one was seen moments ago
        seen.set(keys.WORKER_HEALTH, b"restarting", px=60_000)
    with processes as gateway:
        body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=30) as reply:
            assert reply.status_code == 200, "the stream is committed while the request waits in the queue"
            lines = reply.iter_lines()
            comments = 0
            for line in lines:
                if line == ": keep-alive":
                    comments += 1
                    if comments == 3:
                        break
            gateway.start_worker()
            data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or "" for chunk in data[:-1] for choice in json.loads(chunk)["choices"]
    )
    assert text == "at last"


def test_jobs_beyond_a_full_worker_start_as_soon_as_a_slot_frees(redis_url: str) -> None:
    """With one slot and a slow timer poll, queued jobs must still start the moment the slot frees (the
    wake-up of a job nobody had room for is taken then), not at the next poll."""
    config = (
        "[worker]\nmax_jobs = 1\npoll_delay_s = 5\n"
        '[[channels]]\nname = "m"\ntype = "mock"\nmodels = ["mock-1"]\nreply = "a b c d e"\ntokens_per_second = 10\n'
    )
    with (
        GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0) as sdk,
        ThreadPoolExecutor(3) as pool,
    ):

        def ask(number: int) -> str:
            messages: Any = [{"role": "user", "content": f"question {number}"}]
            return sdk.chat.completions.create(model="mock-1", messages=messages).choices[0].message.content or ""

        started = time.monotonic()
        answers = list(pool.map(ask, range(3)))
        elapsed = time.monotonic() - started
    assert answers == ["a b c d e"] * 3
    assert elapsed < 3 * 0.5 + 1.5, f"{elapsed:.2f} s: a queued job waited for the timer poll"
