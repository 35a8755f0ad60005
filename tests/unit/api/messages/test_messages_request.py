"""Anthropic Messages request bodies → GenerationRequest, and the 400s for what cannot be served."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from api.messages.request import decode_count_tokens, decode_messages_request, prompt_characters, to_generation
from shared.errors import InvalidRequest
from shared.generation import CacheControl, ClientInfo, GenerationRequest, ImagePart, TextPart, Thinking, ToolCall

PNG = "iVBORw0KGgo="
TOOL: Any = {"name": "read", "description": "Read a file.", "input_schema": {"type": "object"}}


def _generation(**body: Any) -> GenerationRequest:
    full = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **body}
    decoded = decode_messages_request(msgspec.json.encode(full))
    return to_generation(decoded, generation_id="g", request_id="r", reply_to="c", created=1, client=ClientInfo())


def _refused(**body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        _generation(**body)
    return caught.value


def test_system_blocks_keep_their_cache_marks_and_a_string_is_one_part() -> None:
    blocks = [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]
    system = _generation(system=blocks).messages[0]
    assert (system.role, system.content) == ("system", [TextPart("A"), TextPart("B", CacheControl())])
    assert _generation(system="S").messages[0].content == [TextPart("S")]


def test_a_tool_turn_round_trips_ids_thinking_and_failed_results() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "plan", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "text of a"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "no such file"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                },
                {"type": "text", "text": "and?"},
            ],
        },
    ]
    out = _generation(messages=messages, tools=[TOOL]).messages
    assert [m.role for m in out] == ["user", "assistant", "tool", "tool", "user"]
    assistant = out[1]
    assert assistant.thinking == [Thinking("plan", "sig"), Thinking(redacted="xyz")]
    assert assistant.tool_calls == [ToolCall("toolu_1", "read", '{"path":"a"}'), ToolCall("toolu_2", "read", "{}")]
    assert (out[2].tool_call_id, out[2].text(), out[2].is_error) == ("toolu_1", "text of a", False)
    assert out[3].is_error and out[3].content[1] == ImagePart(f"data:image/png;base64,{PNG}")
    assert out[4].text() == "and?"


def test_options_map_onto_sampling_and_tool_choice() -> None:
    generation = _generation(
        tools=[TOOL, {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "tool", "name": "read", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=3,
        metadata={"user_id": "u1"},
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    assert [tool.name for tool in generation.tools] == ["read"]  # server tools are not offered
    assert generation.tool_choice is not None and (generation.tool_choice.mode, generation.tool_choice.name) == (
        "function",
        "read",
    )
    s = generation.sampling
    assert (s.max_output_tokens, s.stop, s.temperature, s.top_p, s.top_k) == (100, ["END"], 0.5, 0.9, 3)
    assert (s.user, s.thinking_budget, s.parallel_tool_calls) == ("u1", 2048, False)
    assert _generation(tools=[TOOL], tool_choice={"type": "any"}).tool_choice.mode == "required"  # type: ignore[union-attr]
    assert _generation(tools=[TOOL], tool_choice={"type": "none"}).tool_choice.mode == "none"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}, "tool_use_id"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@@"}}
                        ],
                    }
                ]
            },
            "source.data",
        ),
        ({"tools": [{"name": "x"}]}, "tools[0].input_schema"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(body: dict[str, Any], field: str) -> None:
    assert field in str(_refused(**body))


def test_a_missing_max_tokens_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="max_tokens"):
        decode_messages_request(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')


def test_a_tool_result_must_answer_the_turn_just_before() -> None:
    old_call = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]}
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}
    _generation(messages=[{"role": "user", "content": "go"}, old_call, answer])
    late = [{"role": "user", "content": "go"}, old_call, answer, {"role": "assistant", "content": "done"}, answer]
    assert "tool_use_id" in str(_refused(messages=late))


def test_count_tokens_needs_no_max_tokens_and_grows_with_the_prompt() -> None:
    short = decode_count_tokens(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    long = decode_count_tokens(
        msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi " * 400}], "tools": [TOOL]})
    )
    assert 0 < prompt_characters(short) < prompt_characters(long)
