"""The Messages front door through real processes, driven by the official ``anthropic`` SDK.

Three backends: the fake Anthropic API (thinking, signatures and cache usage pass through), the fake
OpenAI API (native tool calls, translated), and a model without tools behind the text bridge.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.anthropic_upstream import (
    CACHE_WRITTEN_TOKENS,
    CACHED_TOKENS,
    PLAIN_PIECES,
    RunningAnthropicUpstream,
)
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ASK: Any = [{"role": "user", "content": "weather in Paris?"}]


def _claude_code_tools(count: int) -> list[Any]:
    """Tools shaped like Claude Code's: long descriptions, enums, ``$schema`` and ``additionalProperties``."""
    tools = [WEATHER]
    for number in range(count - 1):
        schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The absolute path to the file. " * 5},
                "mode": {"type": "string", "enum": ["read", "write", "append"]},
                "limit": {"type": "number"},
            },
            "required": ["file_path"],
            "additionalProperties": False,
        }
        tools.append({"name": f"Tool{number}", "description": "Does one thing well. " * 40, "input_schema": schema})
    return tools


@pytest.fixture(scope="module")
def claude() -> Iterator[RunningAnthropicUpstream]:
    with RunningAnthropicUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    redis_url: str, claude: RunningAnthropicUpstream, upstream: RunningFakeUpstream
) -> Iterator[GatewayProcesses]:
    config = f"""
[[channels]]
name = "claude"
type = "anthropic"
base_url = "{claude.base_url}"
api_key = "{claude.api_key}"
models = ["claude-text", "claude-tools", "claude-echo", "claude-stream-error"]

[[channels]]
name = "openai"
type = "openai"
base_url = "{upstream.base_url}"
models = ["fake-tools", "fake-transcript", "fake-model"]

[[channels]]
name = "textonly"
type = "openai"
base_url = "{upstream.base_url}"
tool_mode = "bridge"
models = [{{ name = "bridged", upstream = "fake-xml" }}]

[[channels]]
name = "mock-slow"
type = "mock"
models = ["mock-slow"]
tokens_per_second = 20
reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
"""
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as processes:
        yield processes


@pytest.fixture
def sdk(gateway: GatewayProcesses) -> Iterator[anthropic.Anthropic]:
    root = gateway.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=root, api_key="k", max_retries=0, timeout=20) as client:
        yield client


def _last_upstream_body(fake: RunningAnthropicUpstream) -> Any:
    return httpx.get(f"{fake.base_url}/_last").json()


def test_a_plain_message_keeps_the_cache_usage(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="claude-text", max_tokens=100, messages=ASK)
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "".join(PLAIN_PIECES)  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (3, len(PLAIN_PIECES))
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (CACHED_TOKENS, 0)


def test_max_tokens_is_the_stop_reason_when_the_output_is_cut(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="claude-text", max_tokens=2, messages=ASK)
    assert message.stop_reason == "max_tokens"


def test_a_streamed_tool_turn_passes_thinking_and_comes_back_in_history(
    sdk: anthropic.Anthropic, claude: RunningAnthropicUpstream
) -> None:
    with sdk.messages.stream(model="claude-tools", max_tokens=100, messages=ASK, tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    thinking, text, call = final.content
    assert thinking.type == "thinking" and (thinking.thinking, thinking.signature) == ("Hmm.", "c2ln")
    assert text.type == "text" and text.text == "Let me check."
    assert call.type == "tool_use" and (call.id, call.name, call.input) == (
        "toolu_fake1",
        "get_weather",
        {"city": "Paris"},
    )
    assert final.stop_reason == "tool_use"
    history: Any = [
        *ASK,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake1", "content": "Sunny, 21°C"}]},
    ]
    echoed = sdk.messages.create(model="claude-echo", max_tokens=100, messages=history, tools=[WEATHER])
    transcript = echoed.content[0].text  # type: ignore[union-attr]
    assert 'assistant:thinking(c2ln) Let me check. tool_use(toolu_fake1 get_weather {"city":"Paris"})' in transcript
    assert transcript.endswith("user:tool_result(toolu_fake1):Sunny, 21°C")


def test_a_claude_code_conversation(sdk: anthropic.Anthropic, claude: RunningAnthropicUpstream) -> None:
    """System blocks with cache_control, 25 tools, thinking, several tool turns, a failed tool, an image."""
    system: Any = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Help the user with software tasks. " * 200, "cache_control": {"type": "ephemeral"}},
    ]
    tools = _claude_code_tools(25)
    messages: Any = [{"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]}]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    for turn in range(3):
        with sdk.messages.stream(
            model="claude-tools",
            max_tokens=2000,
            system=system,
            messages=messages,
            tools=tools,
            thinking={"type": "enabled", "budget_tokens": 1024},
            metadata={"user_id": "user_abc_account_1_session_x"},
        ) as stream:
            final = stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.usage.cache_creation_input_tokens == CACHE_WRITTEN_TOKENS
        call = final.content[-1]
        assert call.type == "tool_use"
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]})
        result: Any = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "ok"}]}
        if turn == 1:
            result = {**result, "is_error": True, "content": [{"type": "text", "text": "failed"}, image]}
        messages.append({"role": "user", "content": [result]})
    sent = _last_upstream_body(claude)
    assert sent["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert len(sent["tools"]) == 25 and sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["metadata"] == {"user_id": "user_abc_account_1_session_x"}
    assistant_turns = [m for m in sent["messages"] if m["role"] == "assistant"]
    assert len(assistant_turns) == 2
    assert all(
        turn["content"][0] == {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"} for turn in assistant_turns
    )
    failed = sent["messages"][4]["content"][0]
    assert failed["is_error"] is True and failed["content"][1]["type"] == "image"


def test_an_upstream_error_after_the_stream_began_is_an_error_event(sdk: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(model="claude-stream-error", max_tokens=100, messages=ASK) as stream,
    ):
        for _ in stream:
            pass
    assert "overloaded" in str(caught.value).lower()


@pytest.mark.parametrize("streamed", [False, True])
def test_an_openai_backend_gets_native_tool_calls_translated(sdk: anthropic.Anthropic, streamed: bool) -> None:
    if streamed:
        with sdk.messages.stream(model="fake-tools", max_tokens=100, messages=ASK, tools=[WEATHER]) as stream:
            final = stream.get_final_message()
    else:
        final = sdk.messages.create(model="fake-tools", max_tokens=100, messages=ASK, tools=[WEATHER])
    assert final.stop_reason == "tool_use"
    calls = [block for block in final.content if block.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].input == {"city": "Paris"}


def test_an_openai_backend_sees_anthropic_tool_ids_unchanged(sdk: anthropic.Anthropic) -> None:
    history: Any = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "rain"}]},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]
    message = sdk.messages.create(model="fake-transcript", max_tokens=100, messages=history, tools=[WEATHER])
    transcript = message.content[0].text  # type: ignore[union-attr]
    assert "call(toolu_01A get_weather" in transcript and "call(toolu_01B get_weather" in transcript
    assert "tool(toolu_01A):sunny | tool(toolu_01B):rain | user:and now?" in transcript


@pytest.mark.parametrize("streamed", [False, True])
def test_a_model_without_tools_calls_them_through_the_bridge(sdk: anthropic.Anthropic, streamed: bool) -> None:
    if streamed:
        with sdk.messages.stream(model="bridged", max_tokens=100, messages=ASK, tools=[WEATHER]) as stream:
            final = stream.get_final_message()
    else:
        final = sdk.messages.create(model="bridged", max_tokens=100, messages=ASK, tools=[WEATHER])
    calls = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"})]


BAD_REQUESTS: list[tuple[Any, str]] = [
    ({"model": "claude-text", "messages": ASK}, "max_tokens"),
    (
        {
            "model": "claude-text",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "?"}]}
            ],
        },
        "messages[0].content[0].tool_use_id",
    ),
    (
        {"model": "claude-text", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        "messages[0].content[0].type",
    ),
    (
        {
            "model": "claude-text",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"},
                        }
                    ],
                }
            ],
        },
        "messages[0].content[0].source.data",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
def test_bad_input_is_an_anthropic_400_naming_the_field(gateway: GatewayProcesses, body: Any, field: str) -> None:
    answer = httpx.post(f"{gateway.base_url}/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 400
    error = answer.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert field in error["error"]["message"]


def test_deeply_nested_json_is_a_400_not_a_500(gateway: GatewayProcesses) -> None:
    nested = '{"model": "claude-text", "max_tokens": 10, "messages": ' + "[" * 5000 + "]" * 5000 + "}"
    answer = httpx.post(f"{gateway.base_url}/messages", content=nested, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"


def test_the_sdk_raises_its_own_errors(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="no-such-model", max_tokens=10, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(model="claude-text", max_tokens=0, messages=ASK)


def test_claude_codes_query_string_and_beta_header_are_accepted(gateway: GatewayProcesses) -> None:
    headers = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    }
    body = {"model": "claude-text", "max_tokens": 10, "messages": ASK}
    answer = httpx.post(f"{gateway.base_url}/messages?beta=true", json=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["type"] == "message"


def test_count_tokens_and_models(sdk: anthropic.Anthropic) -> None:
    counted = sdk.messages.count_tokens(model="claude-text", messages=ASK, tools=[WEATHER])
    assert counted.input_tokens > 0
    models = sdk.models.list()
    ids = [model.id for model in models.data]
    assert "claude-text" in ids and "bridged" in ids
    assert all(model.type == "model" and model.display_name for model in models.data)


def test_a_client_that_leaves_mid_stream_cancels_the_generation_and_frees_the_gate(
    sdk: anthropic.Anthropic,
) -> None:
    # A conversation with a reply in it is gated: a second request while the first runs gets 409.
    conversation: Any = [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "ready"},
        {"role": "user", "content": "go"},
    ]
    stream = sdk.messages.stream(model="mock-slow", max_tokens=100, messages=conversation).__enter__()
    events = iter(stream)
    while next(events).type != "content_block_delta":
        pass
    with pytest.raises(anthropic.ConflictError):
        sdk.messages.create(model="mock-slow", max_tokens=100, messages=conversation)
    stream.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            message = sdk.messages.create(model="mock-slow", max_tokens=100, messages=conversation)
            break
        except anthropic.ConflictError:
            assert time.monotonic() < deadline, "the gate was not released after the client left"
            time.sleep(0.1)
    assert message.stop_reason == "end_turn"


KEY = "sk-e2e-messages-key"


@pytest.fixture(scope="module")
def keyed(redis_url: str) -> Iterator[GatewayProcesses]:
    config = f"""
[access]
mode = "keys"

[[access.keys]]
name = "claude-code"
key_sha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"
models = ["mock-1"]
rpm = 2

[[channels]]
name = "mock"
type = "mock"
models = ["mock-1", "mock-2"]
"""
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as processes:
        yield processes


def test_keys_limits_and_statuses_as_anthropic_clients_see_them(keyed: GatewayProcesses) -> None:
    root = keyed.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=root, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as unknown:
            wrong.messages.create(model="mock-1", max_tokens=10, messages=ASK)
        assert unknown.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with anthropic.Anthropic(base_url=root, auth_token=KEY, max_retries=0) as bearer:  # ANTHROPIC_AUTH_TOKEN
        assert bearer.messages.create(model="mock-1", max_tokens=10, messages=ASK).stop_reason == "end_turn"
    with anthropic.Anthropic(base_url=root, api_key=KEY, max_retries=0) as sdk:  # ANTHROPIC_API_KEY
        with pytest.raises(anthropic.PermissionDeniedError):
            sdk.messages.create(model="mock-2", max_tokens=10, messages=ASK)
        assert [model.id for model in sdk.models.list().data] == ["mock-1"]
        sdk.messages.create(model="mock-1", max_tokens=10, messages=ASK)
        with pytest.raises(anthropic.RateLimitError) as limited:
            sdk.messages.create(model="mock-1", max_tokens=10, messages=ASK)
        assert limited.value.response.headers["retry-after"]
        assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
