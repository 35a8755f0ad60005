"""Traces through real processes: one request's spans, across the API and the worker, in the client's
trace, collected by a fake OTLP/HTTP collector."""

from __future__ import annotations

import time

import openai
import pytest

from tests.e2e.conftest import gateway_config
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.fakes.otlp_collector import CollectedSpan, FakeCollector
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
EXPECTED = {"POST /v1/chat/completions", "queue wait", "relay", "claim", "chat fake-model", "upstream fake"}


def _wait_for_spans(collector: FakeCollector) -> dict[str, CollectedSpan]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        spans = {span.name: span for span in collector.of_trace(TRACE_ID)}
        if spans.keys() >= EXPECTED:
            return spans
        time.sleep(0.1)
    raise AssertionError(f"spans received: {sorted(span.name for span in collector.spans)}")


def test_one_request_is_one_trace_across_api_and_worker(redis_url: str, upstream: RunningFakeUpstream) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with FakeCollector() as collector:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
        config = gateway_config(upstream.base_url)
        with (
            GatewayProcesses(redis_url=redis_url, config_toml=config, env=env) as gateway,
            openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=20) as sdk,
        ):
            stream = sdk.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "hello there"}],
                stream=True,
                extra_headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"},
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            spans = _wait_for_spans(collector)

    request = spans["POST /v1/chat/completions"]
    assert request.service == "aiapi-api" and request.parent_span_id == CLIENT_SPAN
    assert request.attributes["gen_ai.request.model"] == "fake-model"
    assert request.attributes["http.response.status_code"] == 200
    for name in ("queue wait", "relay"):
        assert spans[name].service == "aiapi-api" and spans[name].parent_span_id == request.span_id
    for name in ("claim", "chat fake-model"):
        assert spans[name].service == "aiapi-worker" and spans[name].parent_span_id == request.span_id
    generation = spans["chat fake-model"].attributes
    assert generation["gen_ai.request.model"] == "fake-model"
    assert generation["gen_ai.response.finish_reasons"] == ["stop"]
    assert generation["gen_ai.usage.input_tokens"] == 2 and generation["gen_ai.usage.output_tokens"] > 0
    attempt = spans["upstream fake"]
    assert attempt.parent_span_id == spans["chat fake-model"].span_id
    assert attempt.attributes["gen_ai.provider.name"] == "openai" == attempt.attributes["gen_ai.system"]
    assert attempt.attributes["aiapi.channel"] == "fake" and attempt.attributes["aiapi.account"]
    assert attempt.attributes["gen_ai.usage.output_tokens"] == generation["gen_ai.usage.output_tokens"]
