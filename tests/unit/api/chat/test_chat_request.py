from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.chat.request import decode_chat_request, to_generation
from api.intake.limits import check_limits
from shared.config import LimitsConfig
from shared.errors import GatewayError, InvalidRequest
from shared.generation import (
    ClientInfo,
    GenerationRequest,
    ImagePart,
    TextPart,
    ToolChoice,
    decode_request,
    encode_request,
)
from tests.request_strategies import any_body, chat_bodies


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


@pytest.mark.parametrize("allowed", [None, "auto", [], {"mode": 5}])
def test_allowed_tools_that_are_not_an_object_with_a_string_mode_are_400s(allowed: object) -> None:
    # Regression: these raised msgspec.ValidationError, a 500.
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": allowed},
    }
    with pytest.raises(InvalidRequest) as caught:
        _convert(body)
    assert caught.value.param == "tool_choice"


def _generation(body: bytes) -> GenerationRequest:
    """What the route does with a body before queueing it."""
    request = decode_chat_request(body)
    generation = to_generation(
        request, generation_id="g", request_id="r", reply_to="c", created=1, client=ClientInfo(user_agent="ua")
    )
    check_limits(generation, LimitsConfig())
    return generation


@given(body=st.one_of(chat_bodies, any_body))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_body_becomes_a_queueable_generation_or_a_4xx(body: bytes) -> None:
    try:
        generation = _generation(body)
    except GatewayError as error:
        assert 400 <= error.status < 500, error
        return
    assert decode_request(encode_request(generation)) == generation


USER_X = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 2**64}, "max_completion_tokens"),
        ({"max_tokens": 10**400}, "max_tokens"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]},
            "tools[0].function.parameters",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": 7}}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"response_format": "json"}, "response_format"),
    ],
)
def test_out_of_range_limits_and_junk_schemas_are_400_naming_the_parameter(
    fields: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _convert({"model": "m", "messages": USER_X, **fields})
    assert caught.value.param == param and caught.value.status == 400


def test_valid_limits_and_schemas_pass() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    generation = _convert(
        {
            "model": "m",
            "messages": USER_X,
            "max_completion_tokens": 2**31 - 1,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        }
    )
    assert generation.sampling.max_output_tokens == 2**31 - 1
