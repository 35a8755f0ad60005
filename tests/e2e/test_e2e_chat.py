"""Chat Completions through real processes, driven by the official openai SDK over real sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import gateway_config
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

FULL_TEXT = " ".join(f"chunk{i}" for i in range(20))
MESSAGES = [{"role": "user", "content": "say four words"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def _chat(client: openai.OpenAI, *, stream: bool) -> Any:
    return client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=stream)


def test_models_are_listed_and_retrievable(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"fake-model", "alias-model", "mock-1"} <= ids
    assert client.models.retrieve("mock-1").owned_by == "mock"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_non_streaming_passes_text_and_upstream_usage(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="fake-model", messages=MESSAGES)
    completion = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == FULL_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 20)


def test_legacy_prefix_serves_the_same_api(gateway: GatewayProcesses) -> None:
    base = gateway.base_url.replace("/v1", "/chaynsapi/v1")
    with openai.OpenAI(base_url=base, api_key="test", max_retries=0) as legacy:
        assert (
            legacy.chat.completions.create(model="fake-model", messages=MESSAGES).choices[0].message.content
            == FULL_TEXT
        )
        assert "mock-1" in {model.id for model in legacy.models.list()}


def test_streaming_chunks_follow_the_wire_format(gateway: GatewayProcesses) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, _strict_response_validation=True) as sdk:
        stream = sdk.chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        ended = time.monotonic()
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in with_choices[1:])
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == FULL_TEXT
    assert [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert time.monotonic() - ended < 1


def test_stream_helper_assembles_the_message(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="fake-model", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content == FULL_TEXT


def test_deltas_are_relayed_as_the_upstream_sends_them(redis_url: str) -> None:
    with (
        RunningFakeUpstream(chunks=20, chunk_delay_s=0.1) as slow,
        GatewayProcesses(redis_url=redis_url, config_toml=gateway_config(slow.base_url)) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0) as sdk,
    ):
        started = time.monotonic()
        arrivals = [
            time.monotonic() - started
            for chunk in sdk.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
            if chunk.choices and chunk.choices[0].delta.content
        ]
    assert len(arrivals) == 20
    assert arrivals[0] < 0.5
    assert arrivals[-1] >= 1.8


def test_upstream_connections_are_kept_alive(client: openai.OpenAI, upstream: RunningFakeUpstream) -> None:
    """A stream read to its last event leaves its connection in the worker's pool, so the next call
    pays no new TCP handshake (and, to a real provider, no TLS handshake)."""

    def connections() -> int:
        count: int = httpx.get(f"{upstream.root_url}/_stats").json()["connections"]
        return count

    def ask(stream: bool) -> None:
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in _chat(client, stream=True) if c.choices)
        else:
            assert _chat(client, stream=False).choices[0].message.content

    ask(stream=True)
    opened = connections()
    for stream in (True, False, True, True, False, True):
        ask(stream)
    assert connections() == opened


@pytest.mark.parametrize("stream", [False, True])
def test_native_tool_calls_pass_through(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        with client.chat.completions.stream(model="fake-tools", messages=MESSAGES, tools=[WEATHER_TOOL]) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(model="fake-tools", messages=MESSAGES, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_alias_routes_to_upstream_model_and_keeps_its_name(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="alias-model", messages=MESSAGES)
    assert completion.model == "alias-model"
    assert completion.choices[0].message.content == FULL_TEXT


def test_mock_provider_is_deterministic(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="mock-1", messages=MESSAGES).choices[0].message.content
    second = client.chat.completions.create(model="mock-1", messages=MESSAGES).choices[0].message.content
    assert first == second and first


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES, stream=stream)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_keep_their_meaning(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as server_error:
        client.chat.completions.create(model="fake-error-500", messages=MESSAGES, stream=stream)
    assert server_error.value.status_code == 502
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fake-error-400", messages=MESSAGES, stream=stream)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="fake-error-429", messages=MESSAGES, stream=stream)
    assert limited.value.response.headers["retry-after"] == "1"


def test_error_after_output_started_ends_the_stream_with_an_error(client: openai.OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="fake-midstream-error", messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"model": "mock-1"}', None),
        (b'{"model": "mock-1", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "mock-1", "messages": []}', "messages"),
    ],
)
def test_bad_input_gets_an_openai_shaped_400(gateway: GatewayProcesses, body: bytes, param: str | None) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    if param:
        assert error["param"] == param
    assert response.headers["x-request-id"]


def test_unknown_path_is_an_openai_shaped_404(gateway: GatewayProcesses) -> None:
    response = httpx.get(f"{gateway.base_url}/nothing-here", headers={"x-request-id": "trace-404"})
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.headers.get_list("x-request-id") == ["trace-404"], "no route matched, yet the id is echoed"
    wrong_method = httpx.put(f"{gateway.base_url}/models")
    assert wrong_method.status_code == 405 and wrong_method.headers["x-request-id"].startswith("req_")
