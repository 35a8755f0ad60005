"""The XML text bridge through real processes: a model without native tools, called by SDK and Roo-style clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

CHAT_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK: Any = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture(scope="module")
def bridged(redis_url: str, upstream: RunningFakeUpstream) -> Iterator[GatewayProcesses]:
    config = f"""
[[channels]]
name = "textonly"
type = "openai"
base_url = "{upstream.base_url}"
tool_mode = "bridge"
models = ["fake-xml", "fake-transcript"]
"""
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway:
        yield gateway


def _sdk(gateway: GatewayProcesses, user_agent: str | None = None) -> openai.OpenAI:
    headers = {"User-Agent": user_agent} if user_agent else None
    return openai.OpenAI(
        base_url=gateway.base_url, api_key="k", max_retries=0, default_headers=headers, _strict_response_validation=True
    )


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("user_agent", [None, "RooCode/3.25.0"])
def test_xml_calls_become_real_tool_calls(bridged: GatewayProcesses, stream: bool, user_agent: str | None) -> None:
    with _sdk(bridged, user_agent) as sdk:
        if stream:
            with sdk.chat.completions.stream(model="fake-xml", messages=ASK, tools=[CHAT_TOOL]) as events:
                completion = events.get_final_completion()
        else:
            completion = sdk.chat.completions.create(model="fake-xml", messages=ASK, tools=[CHAT_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert (choice.message.content or "").strip() == "Checking."
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_responses_clients_get_function_call_items(bridged: GatewayProcesses) -> None:
    tool: Any = {"type": "function", "name": "get_weather", "parameters": CHAT_TOOL["function"]["parameters"]}
    with _sdk(bridged) as sdk, sdk.responses.stream(model="fake-xml", input="weather?", tools=[tool]) as events:
        response = events.get_final_response()
    kinds = [item.type for item in response.output]
    assert kinds == ["message", "function_call"]
    call = response.output[1]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_tool_history_is_re_encoded_as_text_for_the_model(bridged: GatewayProcesses) -> None:
    history: Any = [
        *ASK,
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    with _sdk(bridged) as sdk:
        seen = sdk.chat.completions.create(model="fake-transcript", messages=history, tools=[CHAT_TOOL])
    transcript = seen.choices[0].message.content or ""
    assert "get_weather" in transcript and "sunny, 21 C" in transcript
    assert "tool(" not in transcript and " call(" not in transcript  # no native tool roles or calls went upstream
    assert transcript.startswith("system:")  # the tool instructions


def test_without_tools_the_bridge_stays_out_of_the_way(bridged: GatewayProcesses) -> None:
    with _sdk(bridged) as sdk:
        completion = sdk.chat.completions.create(model="fake-xml", messages=ASK)
    assert completion.choices[0].message.content == "No tools."
    assert completion.choices[0].finish_reason == "stop"
