"""Custom (freeform) tools as the function tools every backend understands, and back."""

from __future__ import annotations

import json

import msgspec
import pytest

from api.responses import custom_tools
from shared import openai_responses as wire

LARK = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF'


def _spec(**fields: object) -> wire.CustomToolSpec:
    spec = wire.decode_tool(msgspec.Raw(json.dumps({"type": "custom", "name": "apply_patch", **fields}).encode()))
    assert isinstance(spec, wire.CustomToolSpec)
    return spec


def test_a_custom_tool_is_offered_as_a_function_taking_one_string() -> None:
    tool = custom_tools.as_function(_spec(description="Edit files."))
    assert tool.name == "apply_patch"
    assert tool.description == "Edit files."
    schema = json.loads(bytes(tool.parameters))  # type: ignore[arg-type]
    assert schema["required"] == ["input"]
    assert schema["properties"]["input"]["type"] == "string"


@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "grammar", "syntax": "lark", "definition": LARK},
        {"type": "grammar", "grammar": {"syntax": "lark", "definition": LARK}},
    ],
)
def test_the_grammar_goes_into_the_description(fmt: dict[str, object]) -> None:
    tool = custom_tools.as_function(_spec(description="Edit files.", format=fmt))
    assert tool.description == f"Edit files.\n\nThe input must match this lark grammar:\n{LARK}"


def test_a_text_format_adds_nothing() -> None:
    assert custom_tools.as_function(_spec(format={"type": "text"})).description is None


@pytest.mark.parametrize("text", ["", "plain", '*** Begin Patch\n+"quoted" \\ back\n', "ünï \u2028"])
def test_input_survives_the_round_trip(text: str) -> None:
    assert custom_tools.input_from(custom_tools.arguments_for(text)) == text


@pytest.mark.parametrize("arguments", ["*** Begin Patch", '{"patch": "x"}', '{"input": 3}', "{"])
def test_a_call_not_wrapped_as_asked_keeps_the_text_the_model_wrote(arguments: str) -> None:
    assert custom_tools.input_from(arguments) == arguments


def test_custom_names_are_read_from_the_echoed_tools() -> None:
    tools = [
        msgspec.Raw(b'{"type":"function","name":"shell","parameters":{}}'),
        msgspec.Raw(b'{"type":"custom","name":"apply_patch"}'),
        msgspec.Raw(b'{"type":"web_search"}'),
        msgspec.Raw(b'{"type":"custom"}'),
    ]
    assert custom_tools.custom_names(tools) == frozenset({"apply_patch"})
