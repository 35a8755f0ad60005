"""An Anthropic channel through real processes: the openai SDK in front, the fake Messages API behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import CACHED_TOKENS, PLAIN_PIECES, RunningAnthropicUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

PLAIN_TEXT = "".join(PLAIN_PIECES)
ASK: Any = [{"role": "user", "content": "say four words"}]
ASK_TOKENS = 3 + CACHED_TOKENS
"""The fake counts words, and Anthropic's cache reads count as prompt tokens to an OpenAI client."""
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL: Any = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
CHANNEL_MAX_TOKENS = 1000
ARGUMENTS = {"name": "get_weather", "arguments": '{"city":"Paris"}'}


def _channel(name: str, fake: RunningAnthropicUpstream, models: str, api_key: str | None = None) -> str:
    return f"""
[[channels]]
name = "{name}"
type = "anthropic"
base_url = "{fake.base_url}"
api_key = "{api_key or fake.api_key}"
max_tokens = {CHANNEL_MAX_TOKENS}
models = [{models}]
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningAnthropicUpstream]:
    with RunningAnthropicUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(redis_url: str, fake: RunningAnthropicUpstream) -> Iterator[GatewayProcesses]:
    # Each failing model has a channel to itself, so its error is the one the client gets.
    config = "".join(
        [
            _channel("claude", fake, '"claude-text", "claude-tools", "claude-echo", "claude-stream-error"'),
            _channel("claude-529", fake, '"claude-error-529"'),
            _channel("claude-429", fake, '"claude-error-429"'),
            _channel("claude-badkey", fake, '{ name = "claude-badkey", upstream = "claude-text" }', "sk-wrong"),
        ]
    )
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as processes:
        yield processes


@pytest.fixture
def sdk(gateway: GatewayProcesses) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.base_url, api_key="test", max_retries=0, timeout=20, _strict_response_validation=True
    ) as client:
        yield client


def _last_request(fake: RunningAnthropicUpstream) -> Any:
    return httpx.get(f"{fake.base_url}/_last").json()


def test_chat_non_streaming(sdk: openai.OpenAI, fake: RunningAnthropicUpstream) -> None:
    completion = sdk.chat.completions.create(model="claude-text", messages=ASK)
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (PLAIN_TEXT, "stop")
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (ASK_TOKENS, len(PLAIN_PIECES))
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    sent = _last_request(fake)
    assert sent["model"] == "claude-text" and sent["stream"] is True
    assert sent["max_tokens"] == CHANNEL_MAX_TOKENS


def test_chat_streaming(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="claude-text", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == PLAIN_PIECES
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (ASK_TOKENS, len(PLAIN_PIECES))


def test_max_tokens_reaches_the_upstream_and_cuts_the_reply(sdk: openai.OpenAI, fake: RunningAnthropicUpstream) -> None:
    completion = sdk.chat.completions.create(model="claude-text", messages=ASK, max_tokens=2)
    assert completion.choices[0].message.content == "".join(PLAIN_PIECES[:2])
    assert completion.choices[0].finish_reason == "length"
    assert _last_request(fake)["max_tokens"] == 2


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls(sdk: openai.OpenAI, stream: bool) -> None:
    if stream:
        with sdk.chat.completions.stream(model="claude-tools", messages=ASK, tools=[WEATHER_TOOL]) as events:
            completion = events.get_final_completion()
    else:
        completion = sdk.chat.completions.create(model="claude-tools", messages=ASK, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_round_trip(sdk: openai.OpenAI, fake: RunningAnthropicUpstream) -> None:
    first = sdk.chat.completions.create(model="claude-tools", messages=ASK, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    assert calls is not None
    call = calls[0]
    history: Any = [
        {"role": "system", "content": "You are terse."},
        *ASK,
        {
            "role": "assistant",
            "content": first.choices[0].message.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    reply = sdk.chat.completions.create(
        model="claude-echo", messages=history, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False
    )
    assert reply.choices[0].message.content == (
        "system:You are terse. | user:say four words"
        f' | assistant:Let me check. tool_use({call.id} get_weather {{"city":"Paris"}})'
        f" | user:tool_result({call.id}):sunny and tomorrow?"
    )
    sent = _last_request(fake)
    assert sent["system"] == "You are terse."
    assert sent["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    assert sent["tools"] == [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_responses_create(sdk: openai.OpenAI, fake: RunningAnthropicUpstream) -> None:
    response = sdk.responses.create(model="claude-text", input="say words", instructions="Be kind.")
    assert response.status == "completed"
    assert response.output_text == PLAIN_TEXT
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4 + CACHED_TOKENS, len(PLAIN_PIECES))
    assert response.usage.input_tokens_details.cached_tokens == CACHED_TOKENS
    sent = _last_request(fake)
    assert sent["system"] == "Be kind."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "say words"}]}]


def test_responses_function_calls(sdk: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False}
    with sdk.responses.stream(model="claude-tools", input="weather?", tools=[tool]) as events:
        response = events.get_final_response()
    assert [item.type for item in response.output] == ["message", "function_call"]
    call = response.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("stream", [False, True])
def test_overloaded_is_a_bad_gateway(sdk: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="claude-error-529", messages=ASK, stream=stream)
    assert caught.value.status_code == 502
    assert "Overloaded" in str(caught.value)


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limit_is_a_429(sdk: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="claude-error-429", messages=ASK, stream=stream)
    assert "rate limit" in str(caught.value)


def test_rejected_key_is_reported_without_the_upstreams_text(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="claude-badkey", messages=ASK)
    assert caught.value.status_code == 502
    # An authentication failure's text is about the gateway's key (upstreams echo it): never relayed.
    assert "HTTP 401" in str(caught.value) and "invalid x-api-key" not in str(caught.value)


def test_error_event_after_output_ends_the_stream_with_an_error(sdk: openai.OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for chunk in sdk.chat.completions.create(model="claude-stream-error", messages=ASK, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == PLAIN_PIECES[:2]
