"""A Responses API upstream behind the gateway, through real processes, driven by the official openai SDK.

Clients speak Chat Completions or the Responses API to the gateway; the gateway speaks the Responses API
to the fake upstream. ``GET /_last`` on the fake shows what the gateway sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from tests.fakes.responses_upstream import RunningResponsesUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-responses"
FULL_TEXT = " ".join(f"word{i}" for i in range(8))
MODELS = [
    "resp-model",
    "resp-slow",
    "resp-tools",
    "resp-echo",
    "resp-reasoning",
    "resp-incomplete",
    "resp-failed",
    "resp-error-400",
    "resp-error-429",
    "resp-error-500",
]
CHAT_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
RESPONSES_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": CHAT_TOOL["function"]["parameters"],
    "strict": False,
}


def _config(url: str) -> str:
    models = ", ".join(f'"{model}"' for model in MODELS)
    return f"""
[[channels]]
name = "responses"
type = "openai_responses"
base_url = "{url}"
api_key = "{API_KEY}"
headers = {{ "x-extra" = "e2e" }}
models = [{models}]

[[channels]]
name = "responses-wrong-key"
type = "openai_responses"
base_url = "{url}"
api_key = "sk-wrong"
models = [{{ name = "resp-wrong-key", upstream = "resp-model" }}]
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningResponsesUpstream]:
    with RunningResponsesUpstream(api_key=API_KEY, chunks=8) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(redis_url: str, upstream: RunningResponsesUpstream) -> Iterator[GatewayProcesses]:
    with GatewayProcesses(redis_url=redis_url, config_toml=_config(upstream.base_url)) as processes:
        yield processes


@pytest.fixture(scope="module")
def sdk(gateway: GatewayProcesses) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key="test", max_retries=0, timeout=20) as client:
        yield client


def _last(upstream: RunningResponsesUpstream) -> dict[str, Any]:
    last: dict[str, Any] = httpx.get(f"{upstream.root_url}/_last", timeout=5).json()
    return last


# --- Chat Completions in front ----------------------------------------------------------------------------


def test_chat_completion_through_a_responses_upstream(sdk: openai.OpenAI, upstream: RunningResponsesUpstream) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="resp-model",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "say some words"}],
        temperature=0.2,
        stop=["never"],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == FULL_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 8)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    sent = _last(upstream)
    assert sent["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["x-extra"] == "e2e"
    assert sent["headers"]["x-request-id"] == raw.headers["x-request-id"]
    body = sent["body"]
    assert (body["model"], body["stream"], body["store"], body["temperature"]) == ("resp-model", True, False, 0.2)
    assert body["instructions"] == "be brief" and "stop" not in body
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say some words"}]}
    ]


def test_chat_stream_with_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="resp-reasoning",
            messages=[{"role": "user", "content": "think"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in with_choices) == FULL_TEXT
    assert [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (1, 11)
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 3


def test_chat_deltas_arrive_as_the_upstream_sends_them(sdk: openai.OpenAI) -> None:
    started = time.monotonic()
    arrivals = [
        time.monotonic() - started
        for chunk in sdk.chat.completions.create(
            model="resp-slow", messages=[{"role": "user", "content": "slowly"}], stream=True
        )
        if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(arrivals) == 8
    assert arrivals[-1] - arrivals[0] >= 0.5


def test_chat_response_format_becomes_text_format(sdk: openai.OpenAI, upstream: RunningResponsesUpstream) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    sdk.chat.completions.create(
        model="resp-model", messages=[{"role": "user", "content": "json please"}], response_format=response_format
    )
    assert _last(upstream)["body"]["text"] == {
        "format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    }


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_call_round_trip(sdk: openai.OpenAI, upstream: RunningResponsesUpstream, stream: bool) -> None:
    messages: list[Any] = [{"role": "system", "content": "use tools"}, {"role": "user", "content": "weather?"}]
    completion: ChatCompletion
    if stream:
        with sdk.chat.completions.stream(model="resp-tools", messages=messages, tools=[CHAT_TOOL]) as events:
            completion = events.get_final_completion()
    else:
        completion = sdk.chat.completions.create(model="resp-tools", messages=messages, tools=[CHAT_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_fake0", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # Chat's tools are not strict unless they say so; the Responses API's are, so it is said explicitly.
    assert _last(upstream)["body"]["tools"] == [RESPONSES_TOOL]

    history = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    echo = sdk.chat.completions.create(model="resp-echo", messages=history, tools=[CHAT_TOOL])
    assert echo.choices[0].message.content == (
        'instructions:use tools | user:weather? | call(call_fake0 get_weather {"city": "Paris"}) '
        "| output(call_fake0):sunny"
    )


def test_chat_cut_reply_finishes_with_length(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="resp-incomplete", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "word0 word1 word2 "


@pytest.mark.parametrize("stream", [False, True])
def test_chat_upstream_errors_keep_their_meaning(sdk: openai.OpenAI, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.APIStatusError) as server_error:
        sdk.chat.completions.create(model="resp-error-500", messages=messages, stream=stream)
    assert server_error.value.status_code == 502
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="resp-error-429", messages=messages, stream=stream)
    assert limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="resp-error-400", messages=messages, stream=stream)
    with pytest.raises(openai.APIStatusError) as wrong_key:
        sdk.chat.completions.create(model="resp-wrong-key", messages=messages, stream=stream)
    assert wrong_key.value.status_code == 502


def test_chat_failure_mid_stream_ends_the_stream_with_an_error(sdk: openai.OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        for chunk in sdk.chat.completions.create(
            model="resp-failed", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "word0 word1 word2 "


# --- the Responses API in front ---------------------------------------------------------------------------


def test_responses_create_with_usage(sdk: openai.OpenAI, upstream: RunningResponsesUpstream) -> None:
    response = sdk.responses.create(model="resp-reasoning", input="think hard", instructions="rules here")
    assert (response.status, response.output_text) == ("completed", FULL_TEXT)
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 11)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    body = _last(upstream)["body"]
    assert (body["instructions"], body["store"], body["stream"]) == ("rules here", False, True)


def test_responses_stream(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model="resp-model", input="say words", stream=True))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == FULL_TEXT and len(deltas) == 8
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens == 8


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_call_round_trip(
    sdk: openai.OpenAI, upstream: RunningResponsesUpstream, stream: bool
) -> None:
    first: Response
    if stream:
        with sdk.responses.stream(model="resp-tools", input="weather?", tools=[RESPONSES_TOOL]) as events:
            first = events.get_final_response()
    else:
        first = sdk.responses.create(model="resp-tools", input="weather?", tools=[RESPONSES_TOOL])
    call = first.output[0]
    assert call.type == "function_call"
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_fake0", "get_weather", {"city": "Paris"})
    assert _last(upstream)["body"]["tools"] == [RESPONSES_TOOL]
    second = sdk.responses.create(
        model="resp-echo",
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == (
        'user:weather? | call(call_fake0 get_weather {"city": "Paris"}) | output(call_fake0):sunny'
    )


def test_responses_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        sdk.responses.create(model="resp-error-429", input="hi")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.responses.create(model="resp-error-500", input="hi", stream=True)
    assert caught.value.status_code == 502
    received: list[str] = []
    with pytest.raises(openai.APIError), sdk.responses.stream(model="resp-failed", input="hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                received.append(event.delta)
    assert "".join(received) == "word0 word1 word2 "


def test_responses_cut_reply_is_incomplete(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model="resp-incomplete", input="hi")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
