"""The validator's modes, repairs, client rules and fallbacks."""

from __future__ import annotations

import json

import msgspec
import pytest

from shared.generation import FunctionTool, ToolChoice
from worker.toolbridge import ParsedCall, ToolCallValidator, extract_paths, normalize_arguments


def _tool(name: str, schema: dict[str, object]) -> FunctionTool:
    return FunctionTool(name, parameters=msgspec.Raw(json.dumps(schema).encode()))


def _obj(required: list[str], **props: object) -> dict[str, object]:
    return {"type": "object", "properties": props, "required": required}


S = {"type": "string"}
CLINE_READ = _tool("read_file", _obj(["path"], path=S))
ROO_READ = _tool(
    "read_file",
    _obj(["files"], files={"type": "array", "items": _obj(["path"], path=S, line_ranges={"type": "array"})}),
)
WRITE = _tool(
    "write_to_file", _obj(["path", "content", "line_count"], path=S, content=S, line_count={"type": "integer"})
)
SHELL = _tool(
    "execute_command", _obj(["command", "requires_approval"], command=S, requires_approval={"type": "boolean"})
)
DONE = _tool("attempt_completion", _obj(["result"], result=S))
SEARCH = _tool(
    "search",
    {
        **_obj(["query"], query=S, limit={"type": "integer", "minimum": 1}, tags={"type": "array", "items": S}),
        "additionalProperties": False,
    },
)
TOOLS = [CLINE_READ, WRITE, SHELL, DONE, SEARCH]


def _call(name: str, truncated: bool = False, **args: object) -> ParsedCall:
    return ParsedCall(name, json.dumps(args, separators=(",", ":")), truncated)


def _args(call: ParsedCall) -> object:
    return json.loads(call.arguments_json)


# -- modes --------------------------------------------------------------------------------------------


def test_none_mode_passes_anything_named() -> None:
    validator = ToolCallValidator(TOOLS, "none")
    calls = [_call("no_such_tool", x=1), ParsedCall("read_file", "[1]"), _call("search", truncated=True)]
    result = validator.check(calls, "text")
    assert result.calls == calls
    assert result.text == "text"
    assert result.dropped == []
    assert validator.check([ParsedCall("", "{}")], "").dropped[0].reason == "the call names no tool"


def test_relaxed_accepts_a_good_call_unchanged() -> None:
    result = ToolCallValidator(TOOLS).check([_call("read_file", path="a.py")], "Reading.")
    assert result.calls == [_call("read_file", path="a.py")]
    assert result.text == "Reading."
    assert result.fallback is None


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (_call("nope", a=1), "unknown tool 'nope'"),
        (ParsedCall("read_file", "[1, 2]"), "the arguments are not a JSON object"),
        (_call("read_file"), "missing required parameter 'path'"),
        (_call("read_file", path=None), "missing required parameter 'path'"),
        (_call("read_file", path="  "), "required parameter 'path' is empty"),
        (_call("read_file", truncated=True, path="a"), "the output ended inside this call"),
    ],
)
def test_relaxed_drops(call: ParsedCall, reason: str) -> None:
    result = ToolCallValidator(TOOLS, "relaxed").check([call], "t")
    assert result.calls == []
    assert [d.reason for d in result.dropped] == [reason]
    assert [d.call for d in result.dropped] == [call]
    assert result.fallback == "discard"
    assert result.text == "t"


def test_relaxed_normalizes_obvious_mistakes() -> None:
    validator = ToolCallValidator(TOOLS, "relaxed")
    calls = [
        _call("search", query=42, limit="5", tags="one"),
        _call("search", query="q", tags='["a", "b"]', limit="7.0"),
        _call("read_file", file_path="src/x.py"),
        _call("execute_command", cmd="ls"),
        _call("write_to_file", path="a", content="x\ny\n"),
    ]
    result = validator.check(calls, "")
    assert [_args(c) for c in result.calls] == [
        {"query": "42", "limit": 5, "tags": ["one"]},
        {"query": "q", "tags": ["a", "b"], "limit": 7},
        {"path": "src/x.py"},
        {"command": "ls", "requires_approval": True},
        {"path": "a", "content": "x\ny\n", "line_count": 2},
    ]
    assert result.dropped == []


def test_relaxed_keeps_a_truncated_completion() -> None:
    call = _call("attempt_completion", truncated=True, result="Done, mostly")
    assert ToolCallValidator(TOOLS).check([call], "").calls == [call]


def test_strict_runs_the_full_schema() -> None:
    validator = ToolCallValidator(TOOLS, "strict")
    result = validator.check([_call("search", query="q", limit=0), _call("search", query="q", extra=1)], "")
    assert result.calls == []
    assert "limit" in result.dropped[0].reason and "minimum" in result.dropped[0].reason
    assert "extra" in result.dropped[1].reason
    assert validator.check([_call("search", query="q", limit="3")], "").calls == [_call("search", query="q", limit=3)]


def test_strict_refuses_truncated_calls_and_other_tools_than_the_forced_one() -> None:
    validator = ToolCallValidator(TOOLS, "strict", choice=ToolChoice("function", "search"))
    result = validator.check([_call("search", truncated=True, query="x"), _call("read_file", path="a")], "")
    assert [d.reason for d in result.dropped] == [
        "the output ended inside this call",
        "tool_choice requires 'search'",
    ]


def test_strict_survives_a_broken_schema() -> None:
    broken = _tool("odd", {"type": "object", "properties": {"a": {"type": 12}}})
    unresolvable = _tool("ref", {"$ref": "https://example.invalid/schema.json"})
    validator = ToolCallValidator([broken, unresolvable], "strict")
    assert len(validator.check([_call("odd", a=1), _call("ref", b=2)], "").calls) == 2


def test_one_call_per_turn_keeps_the_first_valid_call() -> None:
    validator = ToolCallValidator(TOOLS, one_call_per_turn=True)
    result = validator.check([_call("nope"), _call("read_file", path="a"), _call("read_file", path="b")], "")
    assert result.calls == [_call("read_file", path="a")]
    assert [d.reason for d in result.dropped] == ["unknown tool 'nope'", "only one tool call is allowed per turn"]


# -- fallbacks ----------------------------------------------------------------------------------------


def test_no_calls_and_none_required_is_not_a_fallback() -> None:
    result = ToolCallValidator(TOOLS, fallback="attempt_completion").check([], "Just chatting.")
    assert result.calls == [] and result.text == "Just chatting." and result.fallback is None


def test_attempt_completion_wraps_the_text() -> None:
    validator = ToolCallValidator(TOOLS, fallback="attempt_completion")
    result = validator.check([_call("nope")], "  Here is the answer.  ")
    assert result.calls == [_call("attempt_completion", result="Here is the answer.")]
    assert result.text == ""
    assert result.fallback == "attempt_completion"


def test_attempt_completion_when_a_call_was_required_and_none_made() -> None:
    validator = ToolCallValidator(TOOLS, fallback="attempt_completion", require_call=True)
    assert validator.check([], "Answer").calls == [_call("attempt_completion", result="Answer")]
    required = ToolCallValidator(TOOLS, fallback="attempt_completion", choice=ToolChoice("required"))
    assert required.check([], "Answer").fallback == "attempt_completion"


def test_attempt_completion_without_text_explains_the_drop() -> None:
    result = ToolCallValidator(TOOLS, fallback="attempt_completion").check([_call("nope")], "")
    assert _args(result.calls[0]) == {"result": "nope: unknown tool 'nope'"}


def test_attempt_completion_fallback_without_the_tool_discards() -> None:
    result = ToolCallValidator([CLINE_READ], fallback="attempt_completion").check([_call("nope")], "text")
    assert result.calls == [] and result.text == "text" and result.fallback == "discard"


def test_read_file_fallback_uses_a_path_from_a_dropped_call() -> None:
    validator = ToolCallValidator(TOOLS, fallback="read_file")
    result = validator.check([_call("open_file", file_path="src/app.py")], "Opening it.")
    assert result.calls == [_call("read_file", path="src/app.py")]
    assert result.text == "Opening it."
    assert result.fallback == "read_file"


def test_read_file_fallback_uses_paths_in_the_text_with_the_roo_shape() -> None:
    validator = ToolCallValidator([ROO_READ], fallback="read_file", require_call=True)
    text = "I can't see the files. Please check `src/main.py` and docs/guide.md, or https://x.io/a.html."
    result = validator.check([], text)
    assert [_args(c) for c in result.calls] == [{"files": [{"path": "src/main.py"}, {"path": "docs/guide.md"}]}]


def test_read_file_fallback_without_a_path_or_the_tool_discards() -> None:
    assert ToolCallValidator(TOOLS, fallback="read_file").check([_call("nope")], "no paths").fallback == "discard"
    no_tool = ToolCallValidator([DONE], fallback="read_file")
    assert no_tool.check([_call("nope", path="a/b.py")], "").fallback == "discard"


# -- client-tool normalization ------------------------------------------------------------------------


def test_normalize_read_file_shapes() -> None:
    roo = json.loads(bytes(ROO_READ.parameters).decode())  # type: ignore[arg-type]
    assert normalize_arguments("read_file", {"path": "a"}, roo) == {"files": [{"path": "a"}]}
    assert normalize_arguments("read_file", {"file_path": "a"}, roo) == {"files": [{"path": "a"}]}
    assert normalize_arguments("read_file", {"paths": ["a", "b"]}, roo) == {"files": [{"path": "a"}, {"path": "b"}]}
    assert normalize_arguments("read_file", {"files": ["a", {"file": "b"}, {"x": 1}]}, roo) == {
        "files": [{"path": "a"}, {"path": "b"}]
    }
    cline = json.loads(bytes(CLINE_READ.parameters).decode())  # type: ignore[arg-type]
    assert normalize_arguments("read_file", {"files": [{"path": "a"}]}, cline) == {"path": "a"}
    assert normalize_arguments("read_file", {"filepath": "a"}, cline) == {"path": "a"}


def test_normalize_without_schema_and_schema_guard() -> None:
    assert normalize_arguments("write_to_file", {"file_path": "a", "contents": "x"}) == {"path": "a", "content": "x"}
    assert normalize_arguments("attempt_completion", {"message": {"k": 1}}) == {"result": '{"k":1}'}
    own = {"type": "object", "properties": {"file_path": S}}
    assert normalize_arguments("read_file", {"file_path": "a"}, own) == {"file_path": "a"}
    assert normalize_arguments("unknown_tool", {"file_path": "a"}) == {"file_path": "a"}


def test_extract_paths() -> None:
    text = "See `README.md`, src/app/main.py and ./tests/test_x.py. Not http://a.com/b.html nor plain.txt"
    assert extract_paths(text) == ["README.md", "src/app/main.py", "./tests/test_x.py"]
    assert extract_paths("`a/b.py` `a/b.py` c/d.rs", limit=1) == ["a/b.py"]


# -- forced calls (tool_choice required or a named function, and no call) --------------------------------

WEATHER = _tool("get_weather", _obj(["city"], city=S, unit={"type": "string", "enum": ["c", "f"]}))
CONVERT = _tool("convert", _obj(["amount", "unit"], amount={"type": "number"}, unit={"enum": ["c", "f"]}))


def test_forced_call_fills_text_parameters_with_the_users_message() -> None:
    validator = ToolCallValidator([WEATHER, SEARCH], choice=ToolChoice("required"))
    result = validator.check([], "I cannot look that up.", user_text=" weather in Oslo ")
    assert result.calls == [_call("get_weather", city="weather in Oslo")]
    assert result.text == "I cannot look that up."


def test_forced_call_prefers_the_named_tool_and_json_the_model_wrote() -> None:
    validator = ToolCallValidator([WEATHER, CONVERT], choice=ToolChoice("function", "convert"))
    result = validator.check([], 'Like {"x": 1} or {"amount": "3", "unit": "f"}.', user_text="3 F?")
    assert result.calls == [_call("convert", amount=3, unit="f")]


def test_forced_call_picks_the_tool_the_text_mentions() -> None:
    validator = ToolCallValidator([SEARCH, WEATHER], choice=ToolChoice("required"))
    assert validator.check([], "get_weather would do.", user_text="Oslo").calls[0].name == "get_weather"
    assert validator.check([], "no idea", user_text="Oslo").calls[0].name == "search"


def test_no_forced_call_when_a_parameter_cannot_be_filled() -> None:
    convert = ToolCallValidator([CONVERT], choice=ToolChoice("required"))
    assert convert.check([], "no", user_text="3 F?").calls == []
    weather = ToolCallValidator([WEATHER], choice=ToolChoice("required"))
    assert weather.check([], "no", user_text="").calls == []


def test_forced_call_replaces_a_fallback_of_another_tool() -> None:
    validator = ToolCallValidator(
        [WEATHER, DONE], fallback="attempt_completion", choice=ToolChoice("function", "get_weather")
    )
    assert validator.check([], "Sunny.", user_text="Oslo").calls == [_call("get_weather", city="Oslo")]
    required = ToolCallValidator([WEATHER, DONE], fallback="attempt_completion", choice=ToolChoice("required"))
    assert required.check([], "Sunny.", user_text="Oslo").calls == [_call("attempt_completion", result="Sunny.")]


def test_turn_outcomes() -> None:
    turn = ToolCallValidator(TOOLS, one_call_per_turn=True).turn()
    assert turn.offer(_call("nope")) is None
    assert turn.offer(_call("read_file", path="a")) == _call("read_file", path="a")
    assert turn.offer(_call("read_file", path="b")) is None
    assert turn.offer(_call("read_file", path="c")) is None
    assert turn.close("").calls == []
    assert turn.outcomes == ["validation_filtered", "strict_client_rule_applied"]
    agent = ToolCallValidator(TOOLS, fallback="attempt_completion", require_call=True).turn()
    assert agent.close("Done.").fallback == "attempt_completion"
    assert agent.outcomes == ["xml_not_found", "strict_client_rule_applied"]
    discard = ToolCallValidator(TOOLS).turn()
    discard.offer(_call("nope"))
    assert discard.close("text").fallback == "discard"
    assert discard.outcomes == ["validation_filtered", "fallback_applied"]
