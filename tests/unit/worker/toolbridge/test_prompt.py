"""The request side of the bridge: instructions, the canonical call form, and the history re-encoded."""

from __future__ import annotations

import json
import re

import msgspec

from shared.generation import FunctionTool, ImagePart, Message, TextPart, ToolCall, ToolChoice
from worker.toolbridge import (
    ParsedCall,
    TextOut,
    apply_bridge,
    encode_calls,
    encode_history,
    new_trigger,
    parse_output,
    tool_instructions,
)

TRIGGER = "<<CALL_abcd1234>>"


def _tool(name: str, schema: dict[str, object] | None = None, description: str | None = None) -> FunctionTool:
    raw = msgspec.Raw(json.dumps(schema).encode()) if schema is not None else msgspec.UNSET
    return FunctionTool(name, description, raw)


READ = _tool(
    "read_file",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    "Read one file from the workspace.",
)
SHELL = _tool("execute_command", {"type": "object", "properties": {"command": {"type": "string"}}})
TOOLS = [READ, SHELL]


def _args(**kwargs: object) -> str:
    return json.dumps(kwargs)


def test_new_trigger_is_random_and_well_formed() -> None:
    triggers = {new_trigger() for _ in range(50)}
    assert len(triggers) == 50
    assert all(re.fullmatch(r"<<CALL_[a-z0-9]{8}>>", t) for t in triggers)


def test_a_session_keeps_its_trigger_from_turn_to_turn() -> None:
    assert new_trigger("sess_a") == new_trigger("sess_a")
    assert new_trigger("sess_a") != new_trigger("sess_b")
    assert re.fullmatch(r"<<CALL_[a-z0-9]{8}>>", new_trigger("sess_a"))


def test_instructions_describe_tools_format_and_trigger() -> None:
    text = tool_instructions(TOOLS, None, TRIGGER)
    assert TRIGGER in text
    assert '<tool name="read_file">' in text
    assert "Read one file from the workspace." in text
    assert '"required":["path"]' in text
    assert '<tool name="execute_command">' in text
    assert "<function_calls>" in text
    assert '<invoke name="TOOL_NAME">' in text
    assert "only when it is needed" in text


def test_instructions_honour_tool_choice() -> None:
    assert tool_instructions(TOOLS, ToolChoice("none"), TRIGGER) == ""
    assert tool_instructions([], None, TRIGGER) == ""
    assert "at least one tool" in tool_instructions(TOOLS, ToolChoice("required"), TRIGGER)
    forced = tool_instructions(TOOLS, ToolChoice("function", "execute_command"), TRIGGER)
    assert "must call the tool `execute_command`" in forced
    assert '<tool name="execute_command">' in forced
    assert '<tool name="read_file">' not in forced
    auto = tool_instructions(TOOLS, ToolChoice("auto"), TRIGGER)
    assert auto == tool_instructions(TOOLS, None, TRIGGER)


def test_instructions_for_agent_clients() -> None:
    text = tool_instructions(TOOLS, None, TRIGGER, one_call_per_turn=True, require_call=True)
    assert "exactly one tool per reply" in text
    assert "several <invoke>" not in text
    assert "Every reply must call a tool" in text
    assert "only when it is needed" not in text
    forced = tool_instructions(TOOLS, ToolChoice("function", "read_file"), TRIGGER, require_call=True)
    assert "must call the tool `read_file`" in forced


def test_encode_calls_canonical_form() -> None:
    calls = [ToolCall("c1", "read_file", _args(path="a.py")), ToolCall("c2", "x", _args(n=3, flags=["-v"]))]
    assert encode_calls(calls, TRIGGER, TOOLS) == (
        f"{TRIGGER}\n<function_calls>\n"
        '<invoke name="read_file">\n<parameter name="path">a.py</parameter>\n</invoke>\n'
        '<invoke name="x">\n<parameter name="n">3</parameter>\n<parameter name="flags">["-v"]</parameter>\n</invoke>\n'
        "</function_calls>"
    )


def test_multiline_values_sit_on_their_own_lines() -> None:
    encoded = encode_calls([ToolCall("c", "read_file", _args(path="a\nb"))], TRIGGER, TOOLS)
    assert '<parameter name="path">\na\nb\n</parameter>' in encoded


def test_ambiguous_values_fall_back_to_the_json_form() -> None:
    calls = [
        ToolCall("c1", "x", _args(code="42")),
        ToolCall("c2", "read_file", _args(path="</parameter>")),
    ]
    encoded = encode_calls(calls, TRIGGER, TOOLS)
    assert '<invoke name="x">{"code":"42"}</invoke>' in encoded
    assert '<invoke name="read_file">{"path":"\\u003c/parameter>"}</invoke>' in encoded
    assert parse_output(encoded, TRIGGER, TOOLS) == [
        ParsedCall("x", '{"code":"42"}'),
        ParsedCall("read_file", '{"path":"</parameter>"}'),
    ]


def test_string_typed_value_that_looks_like_json_stays_in_parameter_form() -> None:
    encoded = encode_calls([ToolCall("c", "execute_command", _args(command="true"))], TRIGGER, TOOLS)
    assert '<parameter name="command">true</parameter>' in encoded
    assert parse_output(encoded, TRIGGER, TOOLS) == [ParsedCall("execute_command", '{"command":"true"}')]


def test_unparseable_history_arguments_are_kept_verbatim() -> None:
    encoded = encode_calls([ToolCall("c", "x", "{broken")], TRIGGER)
    assert '<invoke name="x">{broken</invoke>' in encoded


def test_history_tool_calls_and_results_become_text() -> None:
    messages = [
        Message("user", [TextPart("What is in a.py?")]),
        Message(
            "assistant",
            [TextPart("Let me look.")],
            tool_calls=[ToolCall("call_1", "read_file", _args(path="a.py")), ToolCall("call_2", "x", "{}")],
        ),
        Message("tool", [TextPart("print('hi')")], tool_call_id="call_1"),
        Message("tool", [TextPart("ok"), ImagePart("https://e.x/i.png")], tool_call_id="call_2", name="x"),
        Message("user", [TextPart("Thanks")]),
    ]
    out = encode_history(messages, TRIGGER, TOOLS)
    assert [m.role for m in out] == ["user", "assistant", "user", "user"]
    assert all(not m.tool_calls and m.tool_call_id is None for m in out)
    assistant = out[1].text()
    assert assistant.startswith("Let me look.\n\n" + TRIGGER + "\n<function_calls>\n")
    assert parse_output(assistant, TRIGGER, TOOLS) == [
        TextOut("Let me look.\n\n"),
        ParsedCall("read_file", '{"path":"a.py"}'),
        ParsedCall("x", "{}"),
    ]
    results = out[2]
    assert results.text() == (
        "<function_results>\n"
        '<result call_id="call_1" name="read_file">\nprint(\'hi\')\n</result>\n'
        '<result call_id="call_2" name="x">\nok\n</result>\n'
        "</function_results>"
    )
    assert ImagePart("https://e.x/i.png") in results.content
    assert out[3] == messages[4]


def test_assistant_with_only_calls_and_trailing_results() -> None:
    messages = [
        Message("assistant", tool_calls=[ToolCall("c9", "read_file", _args(path="b"))]),
        Message("tool", [TextPart("B")], tool_call_id="c9"),
    ]
    out = encode_history(messages, TRIGGER, TOOLS)
    assert out[0].text().startswith(TRIGGER)
    assert out[1].role == "user"
    assert '<result call_id="c9" name="read_file">\nB\n</result>' in out[1].text()


def test_history_without_tool_traffic_is_unchanged() -> None:
    messages = [Message("system", [TextPart("Be brief.")]), Message("user", [TextPart("Hi")])]
    assert encode_history(messages, TRIGGER) == messages


def test_apply_bridge_appends_to_the_system_message() -> None:
    messages = [Message("system", [TextPart("Be brief.")]), Message("user", [TextPart("Hi")])]
    out = apply_bridge(messages, TOOLS, None, TRIGGER)
    assert len(out) == 2
    assert out[0].role == "system"
    assert out[0].text().startswith("Be brief.\n\n<tool_calling>\n")
    assert out[0].text().endswith("</tool_calling>")
    assert messages[0].text() == "Be brief."


def test_apply_bridge_creates_a_system_message() -> None:
    out = apply_bridge([Message("user", [TextPart("Hi")])], TOOLS, ToolChoice("required"), TRIGGER)
    assert [m.role for m in out] == ["system", "user"]
    assert out[0].text() == tool_instructions(TOOLS, ToolChoice("required"), TRIGGER)


def test_apply_bridge_with_tool_choice_none_still_encodes_history() -> None:
    messages = [
        Message("user", [TextPart("Hi")]),
        Message("assistant", tool_calls=[ToolCall("c", "read_file", _args(path="a"))]),
        Message("tool", [TextPart("A")], tool_call_id="c"),
    ]
    out = apply_bridge(messages, TOOLS, ToolChoice("none"), TRIGGER)
    assert [m.role for m in out] == ["user", "assistant", "user"]
    assert "<tool_calling>" not in "".join(m.text() for m in out)
    assert "<function_results>" in out[2].text()
