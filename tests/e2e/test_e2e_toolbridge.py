"""The XML text bridge through real processes: a model without native tools, called by SDK and Roo-style clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import ROO_READ, ROO_REPLIES, RunningFakeUpstream
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
models = ["fake-xml", "fake-xml-pause", "fake-transcript", "fake-model", "fake-roo"]

[[channels]]
name = "textonly-roo"
type = "openai"
base_url = "{upstream.base_url}"
tool_mode = "bridge"
tool_client = "roo"
models = [{{ name = "roo-always", upstream = "fake-roo" }}]
"""
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway:
        yield gateway


def _sdk(
    gateway: GatewayProcesses, user_agent: str | None = None, headers: dict[str, str] | None = None
) -> openai.OpenAI:
    headers = {**({"User-Agent": user_agent} if user_agent else {}), **(headers or {})}
    return openai.OpenAI(
        base_url=gateway.base_url,
        api_key="k",
        max_retries=0,
        timeout=15,
        default_headers=headers,
        _strict_response_validation=True,
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


# -- a Roo Code client with its own XML tool protocol (no `tools` in the request) --------------------------

ROO_HEADERS = {"X-Title": "Roo Code", "HTTP-Referer": "https://github.com/RooVetGit/Roo-Cline"}
ROO_SYSTEM = """You are Roo, a skilled software engineer.

# Tools

## read_file
Description: Read a file.
Usage:
<read_file>
<path>File path here</path>
</read_file>

## write_to_file
Usage:
<write_to_file>
<path>File path here</path>
<content>Content here</content>
</write_to_file>

## attempt_completion
Usage:
<attempt_completion>
<result>Your final result</result>
</attempt_completion>
"""
COMPLETION = f"<attempt_completion>\n<result>\n{ROO_REPLIES['chat']}\n</result>\n</attempt_completion>"


def _roo_chat(sdk: openai.OpenAI, model: str, task: str, stream: bool) -> tuple[str, str | None]:
    messages: Any = [{"role": "system", "content": ROO_SYSTEM}, {"role": "user", "content": f"<task>{task}</task>"}]
    if not stream:
        completion = sdk.chat.completions.create(model=model, messages=messages)
        assert completion.choices[0].message.tool_calls is None
        return completion.choices[0].message.content or "", completion.choices[0].finish_reason
    text, finish = "", None
    for chunk in sdk.chat.completions.create(model=model, messages=messages, stream=True):
        for choice in chunk.choices:
            assert choice.delta.tool_calls is None
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("read src/app.py", f"I will read it.\n{ROO_READ}"),  # control character gone, second tool dropped
        ("typo", ROO_REPLIES["typo"].replace("write_file>", "write_to_file>")),
        ("chat", f"{ROO_REPLIES['chat']}\n\n{COMPLETION}"),  # a reply without a tool closes the task
    ],
)
def test_roo_code_gets_its_own_xml_protocol_back_under_its_rules(
    bridged: GatewayProcesses, stream: bool, task: str, expected: str
) -> None:
    with _sdk(bridged, "RooCode/3.25.1", ROO_HEADERS) as sdk:
        text, finish = _roo_chat(sdk, "fake-roo", task, stream)
    assert text == expected
    assert finish == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_other_clients_get_the_same_reply_untouched(bridged: GatewayProcesses, stream: bool) -> None:
    with _sdk(bridged) as sdk:
        text, _ = _roo_chat(sdk, "fake-roo", "read src/app.py", stream)
    assert text == ROO_REPLIES["read"]


def test_a_channel_can_name_the_client(bridged: GatewayProcesses) -> None:
    with _sdk(bridged) as sdk:
        text, _ = _roo_chat(sdk, "roo-always", "read src/app.py", stream=True)
    assert text == f"I will read it.\n{ROO_READ}"


# -- tool_choice demands a call the model did not make ---------------------------------------------------

TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
PROSE = "chunk0 chunk1 chunk2"  # the start of what fake-model answers: no tool call
CHOICES: Any = {"required": ("required", [CHAT_TOOL]), "named": ("get_weather", [TIME_TOOL, CHAT_TOOL])}


def _chat_choice(choice: str) -> Any:
    return choice if choice == "required" else {"type": "function", "function": {"name": choice}}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", ["required", "named"])
def test_forced_tool_choice_gets_a_call_in_chat(bridged: GatewayProcesses, stream: bool, case: str) -> None:
    choice, tools = CHOICES[case]
    with _sdk(bridged) as sdk:
        kwargs: Any = {"model": "fake-model", "messages": ASK, "tools": tools, "tool_choice": _chat_choice(choice)}
        if stream:
            with sdk.chat.completions.stream(**kwargs) as events:
                completion = events.get_final_completion()
        else:
            completion = sdk.chat.completions.create(**kwargs)
    choice_out = completion.choices[0]
    assert choice_out.finish_reason == "tool_calls"
    assert (choice_out.message.content or "").startswith(PROSE)
    calls = choice_out.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "weather in Paris?"})
    ]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", ["required", "named"])
def test_forced_tool_choice_gets_a_call_in_responses(bridged: GatewayProcesses, stream: bool, case: str) -> None:
    choice, tools = CHOICES[case]
    flat = [
        {"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in tools
    ]
    tool_choice: Any = choice if choice == "required" else {"type": "function", "name": choice}
    with _sdk(bridged) as sdk:
        kwargs: Any = {"model": "fake-model", "input": "weather in Paris?", "tools": flat, "tool_choice": tool_choice}
        if stream:
            with sdk.responses.stream(**kwargs) as events:
                response = events.get_final_response()
        else:
            response = sdk.responses.create(**kwargs)
    assert [item.type for item in response.output] == ["message", "function_call"]
    assert response.output_text.startswith(PROSE)
    call = response.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "weather in Paris?"}


# -- a call reaches the client while the model is still writing ----------------------------------------


def _call_deltas(api: str, sdk: openai.OpenAI) -> Iterator[int | None]:
    """Per stream event, the number of the call whose arguments it carries (0 for the first), else None."""
    if api == "chat":
        for chunk in sdk.chat.completions.create(model="fake-xml-pause", messages=ASK, tools=[CHAT_TOOL], stream=True):
            deltas = [c for choice in chunk.choices for c in choice.delta.tool_calls or () if c.function]
            yield next((c.index for c in deltas if c.function and c.function.arguments), None)
    else:
        tool: Any = {"type": "function", "name": "get_weather", "parameters": CHAT_TOOL["function"]["parameters"]}
        for event in sdk.responses.create(model="fake-xml-pause", input="weather?", tools=[tool], stream=True):
            # Output 0 is the message "Checking."; the calls follow it.
            yield event.output_index - 1 if event.type == "response.function_call_arguments.delta" else None


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_first_call_streams_before_the_model_finishes(
    bridged: GatewayProcesses, upstream: RunningFakeUpstream, api: str
) -> None:
    def stats() -> dict[str, int]:
        values: dict[str, int] = httpx.get(f"{upstream.root_url}/_stats").json()
        return values

    timeouts = stats()["pause_timeouts"]
    calls: list[int] = []
    with _sdk(bridged) as sdk:
        for call in _call_deltas(api, sdk):
            if call is None:
                continue
            if not calls:
                # The fake holds the rest of the turn until released: this call cannot have waited for its end.
                assert call == 0 and stats()["paused"] == 1
                httpx.post(f"{upstream.root_url}/_release")
            calls.append(call)
    assert calls == [0, 1]
    assert stats()["pause_timeouts"] == timeouts
