"""Observability through real processes: Prometheus metrics of the API and the worker, and JSON logs
that carry one request id from the client through the API and the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import GatewayProcesses, free_port

pytestmark = pytest.mark.e2e

CONFIG = '[[channels]]\nname = "m"\ntype = "mock"\nmodels = ["mock-1"]\nreply = "one two three"\n'


@pytest.fixture(scope="module")
def observed(redis_url: str) -> Iterator[tuple[GatewayProcesses, int]]:
    port = free_port()
    env = {"AIAPI_LOG_FORMAT": "json", "AIAPI_WORKER_METRICS_PORT": str(port)}
    with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG, env=env) as gateway:
        yield gateway, port


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _json_lines(gateway: GatewayProcesses) -> list[dict[str, object]]:
    lines = []
    for path in Path(gateway.config_path.parent).glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append({**json.loads(line), "file": path.name})
    return lines


def test_metrics_count_requests_latency_and_worker_outcomes(observed: tuple[GatewayProcesses, int]) -> None:
    gateway, worker_port = observed
    client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}])
    stream = client.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "one two three"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])

    api = _samples(f"{gateway.base_url.removesuffix('/v1')}/metrics")
    route = "/v1/chat/completions"
    assert _value(api, "aiapi_http_requests_total", route=route, method="POST", status="200") == 2
    assert _value(api, "aiapi_http_requests_total", route=route, method="POST", status="404") == 1
    assert _value(api, "aiapi_errors_total", status="404", code="model_not_found") == 1
    assert _value(api, "aiapi_http_request_duration_seconds_count", route=route) == 3
    assert _value(api, "aiapi_time_to_first_token_seconds_count", route=route) == 1, "only the stream has a TTFT"
    assert _value(api, "aiapi_queue_wait_seconds_count") == 2
    assert _value(api, "aiapi_generations_in_flight") == 0

    worker_url = f"http://127.0.0.1:{worker_port}/metrics"
    deadline = time.monotonic() + 5
    while _value(worker := _samples(worker_url), "aiapi_worker_generations_total", outcome="completed") < 2:
        assert time.monotonic() < deadline, "the worker counts its generations"
        time.sleep(0.05)
    assert _value(worker, "aiapi_tokens_total", kind="output") == 6
    assert _value(worker, "aiapi_upstream_first_output_seconds_count", provider="mock") == 2
    assert _value(worker, "aiapi_worker_generations_in_flight") == 0


def test_one_request_id_runs_through_the_api_and_worker_logs(observed: tuple[GatewayProcesses, int]) -> None:
    gateway, _ = observed
    reply = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "mock-1", "messages": [{"role": "user", "content": "trace me"}]},
        headers={"x-request-id": "trace-4711"},
    )
    assert reply.status_code == 200 and reply.headers["x-request-id"] == "trace-4711"
    generation = reply.json()["id"].removeprefix("chatcmpl-")
    unsafe = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "mock-1", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-request-id": "bad id\twith spaces"},
    )
    assert unsafe.headers["x-request-id"].startswith("req_"), "an unsafe client id is replaced"

    deadline = time.monotonic() + 5
    while True:
        traced = [line for line in _json_lines(gateway) if line.get("request_id") == "trace-4711"]
        if {line["file"].split("-")[0] for line in traced} == {"api", "worker"}:  # type: ignore[union-attr]
            break
        assert time.monotonic() < deadline, f"both processes log the request id: {traced}"
        time.sleep(0.05)
    access = next(line for line in traced if line["logger"] == "aiapi.access")
    assert (access["status"], access["path"], access["level"]) == (200, "/v1/chat/completions", "info")
    assert access["generation_id"] == generation
    ended = next(line for line in traced if line["logger"] == "worker.accounting")
    assert ended["generation_id"] == generation and ended["outcome"] == "completed"
    assert (ended["input_tokens"], ended["output_tokens"]) == (2, 3)


LATE = """
[relay]
keepalive_s = 0.2
idle_check_s = 0.1
[[channels]]
name = "late"
type = "mock"
models = ["late-mock"]
first_token_ms = 2000
reply = "late words"
"""


def test_time_to_first_token_counts_the_first_token_not_a_stream_committed_before_it(redis_url: str) -> None:
    """A stream waiting longer than ``keepalive_s`` starts (headers, the chat role chunk, Responses'
    ``response.created``) before its first token: the metric must still wait for the token."""
    with (
        GatewayProcesses(redis_url=redis_url, config_toml=LATE) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0) as client,
    ):
        chat = client.chat.completions.create(
            model="late-mock", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chat if chunk.choices) == "late words"
        responses = client.responses.create(model="late-mock", input="hi", stream=True)
        assert [event.type for event in responses][-1] == "response.completed"
        api = _samples(f"{gateway.base_url.removesuffix('/v1')}/metrics")
    for route in ("/v1/chat/completions", "/v1/responses"):
        assert _value(api, "aiapi_time_to_first_token_seconds_count", route=route) == 1, route
        assert _value(api, "aiapi_time_to_first_token_seconds_sum", route=route) >= 2.0, route
