"""Request size limits, checked before anything is queued."""

from __future__ import annotations

import msgspec
import pytest

from api.intake.limits import check_limits
from shared.config import LimitsConfig
from shared.errors import InvalidRequest
from shared.generation import FunctionTool, GenerationRequest, Message, Sampling, TextPart

LIMITS = LimitsConfig(max_messages=3, max_tools=2, max_tool_schema_bytes=40, max_stop_sequences=1)


def _generation(
    messages: int = 1, tools: int = 0, schema: bytes = b'{"type":"object"}', stop: int = 0
) -> GenerationRequest:
    return GenerationRequest(
        "g",
        "r",
        "m",
        [Message("user", [TextPart("hi")])] * messages,
        "relay",
        1,
        tools=[FunctionTool(f"t{i}", parameters=msgspec.Raw(schema)) for i in range(tools)],
        sampling=Sampling(stop=["x"] * stop),
    )


def test_a_request_within_the_limits_passes() -> None:
    check_limits(_generation(messages=3, tools=2, stop=1), LIMITS)


@pytest.mark.parametrize(
    ("generation", "code", "param"),
    [
        (_generation(messages=4), "too_many_messages", "messages"),
        (_generation(tools=3), "too_many_tools", "tools"),
        (
            _generation(tools=1, schema=b'{"type":"object","description":"' + b"x" * 40 + b'"}'),
            "tool_schema_too_large",
            "tools[0]",
        ),
        (_generation(stop=2), "too_many_stop", "stop"),
    ],
)
def test_each_limit_names_its_parameter(generation: GenerationRequest, code: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_limits(generation, LIMITS)
    assert (caught.value.code, caught.value.param) == (code, param)


def test_responses_name_their_input() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_limits(_generation(messages=4), LIMITS, messages_param="input")
    assert caught.value.param == "input"
