from __future__ import annotations

import msgspec
import pytest

from api.chat_adapter import decode_chat_request, to_generation
from shared.errors import InvalidRequest
from shared.generation import ClientInfo, GenerationRequest, ImagePart, TextPart, ToolChoice


def _convert(body: object) -> GenerationRequest:
    request = decode_chat_request(msgspec.json.encode(body))
    return to_generation(request, generation_id="g", request_id="r", reply_to="c", created=1, client=ClientInfo("ua"))


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (b"", "empty", None),
        (b"{", "not valid JSON", None),
        (
            b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}',
            "Invalid value 'robot'",
            "messages[0].role",
        ),
        (b'{"model": "m", "messages": []}', "at least one message", "messages"),
        (b'{"model": "", "messages": [{"role": "user", "content": "x"}]}', "must not be empty", "model"),
        (b'{"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}', "n=1", "n"),
        (b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', "Expected", "messages[0].content"),
    ],
)
def test_bad_requests_are_400_with_param(body: bytes, message: str, param: str | None) -> None:
    with pytest.raises(InvalidRequest, match=message) as caught:
        decode_chat_request(body)
    assert caught.value.param == param


def test_messages_tools_and_options_are_translated() -> None:
    generation = _convert(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "rules"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:x", "detail": "low"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "max_tokens": 7,
            "stop": "END",
            "temperature": 0,
            "unknown_vendor_field": {"x": 1},
        }
    )
    system, user, assistant, tool = generation.messages
    assert (system.role, system.text()) == ("system", "rules")
    assert user.content == [TextPart("look"), ImagePart("data:x", "low")]
    assert assistant.tool_calls[0].name == "f" and assistant.content == []
    assert (tool.role, tool.tool_call_id, tool.text()) == ("tool", "c1", "42")
    assert generation.tools[0].name == "f"
    assert generation.tool_choice == ToolChoice("required")
    assert (generation.sampling.max_output_tokens, generation.sampling.stop, generation.sampling.temperature) == (
        7,
        ["END"],
        0,
    )
    assert generation.client.user_agent == "ua"


def test_named_tool_choice_must_name_a_tool() -> None:
    base = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    assert _convert({**base, "tool_choice": {"type": "function", "function": {"name": "f"}}}).tool_choice == ToolChoice(
        "function", "f"
    )
    with pytest.raises(InvalidRequest, match="unknown function 'g'"):
        _convert({**base, "tool_choice": {"type": "function", "function": {"name": "g"}}})


def test_max_completion_tokens_wins() -> None:
    generation = _convert(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "max_completion_tokens": 9}
    )
    assert generation.sampling.max_output_tokens == 9
