"""One bridged turn: calls go out the moment they close, the client's rules hold, the end adds fallbacks."""

from __future__ import annotations

import json

import msgspec

from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted
from shared.generation import FunctionTool, ToolChoice
from worker.providers import ProviderOutput
from worker.toolbridge import BridgeTurn, OutputSanitizer, ToolCallParser, profile_for, validator_for

TRIGGER = "<<CALL_t3st0k3n>>"


def _tool(name: str, **props: str) -> FunctionTool:
    schema = {"type": "object", "properties": {k: {"type": t} for k, t in props.items()}, "required": list(props)}
    return FunctionTool(name, parameters=msgspec.Raw(json.dumps(schema).encode()))


WEATHER = _tool("get_weather", city="string")
TIME = _tool("get_time", zone="string")
READ = _tool("read_file", path="string")
DONE = _tool("attempt_completion", result="string")


def _turn(
    tools: list[FunctionTool], kind: str = "openai_sdk", choice: ToolChoice | None = None, user_text: str = ""
) -> BridgeTurn:
    profile = profile_for(kind)  # type: ignore[arg-type]
    parser = ToolCallParser(TRIGGER, [t.name for t in tools], tools=tools)
    sanitizer = OutputSanitizer(profile.kind, fix_tag_typos=profile.fix_tag_typos)
    return BridgeTurn(parser, sanitizer, validator_for(profile, tools, choice), user_text=user_text)


def _invoke(name: str, **params: str) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>' for k, v in params.items())
    return f'<invoke name="{name}">{body}</invoke>\n'


def _summary(outputs: list[ProviderOutput]) -> list[object]:
    """Text merged; each call as (index, name, arguments); the finish reason."""
    out: list[object] = []
    for item in outputs:
        if isinstance(item, TextDelta):
            if out and isinstance(out[-1], str):
                out[-1] += item.text
            else:
                out.append(item.text)
        elif isinstance(item, ToolCallStarted):
            out.append((item.index, item.name))
        elif isinstance(item, ToolCallDelta):
            started = out.pop()
            assert isinstance(started, tuple)
            out.append((*started, json.loads(item.arguments)))
        elif isinstance(item, Finished):
            out.append(item.finish_reason)
    return out


def test_each_call_goes_out_when_its_invoke_closes() -> None:
    turn = _turn([WEATHER])
    assert _summary(turn.feed("Checking.\n" + TRIGGER + "\n<function_calls>\n")) == ["Checking.\n"]
    first = turn.feed(_invoke("get_weather", city="Paris"))
    assert _summary(first) == [(0, "get_weather", {"city": "Paris"})]
    assert isinstance(first[0], ToolCallStarted) and first[0].call_id.startswith("call_")
    second = turn.feed(_invoke("get_weather", city="Rome") + "</function_calls>")
    assert _summary(second) == [(1, "get_weather", {"city": "Rome"})]
    assert _summary(turn.finish("stop")) == ["tool_calls"]
    assert turn.outcomes == []


def test_text_held_by_the_sanitizer_goes_out_before_the_call() -> None:
    turn = _turn([READ], kind="roo")
    out = turn.feed("Reading <read") + turn.feed(f"\n{TRIGGER}\n" + _invoke("read_file", path="a.py"))
    assert _summary(out) == ["Reading <read\n", (0, "read_file", {"path": "a.py"})]


def test_one_call_client_gets_the_first_valid_call_and_nothing_after() -> None:
    turn = _turn([READ, DONE], kind="roo")
    out = turn.feed(f"{TRIGGER}\n<function_calls>\n" + _invoke("read_file") + _invoke("read_file", path="a.py"))
    assert _summary(out) == [(0, "read_file", {"path": "a.py"})]
    rest = turn.feed(_invoke("read_file", path="b.py") + "</function_calls>\nIt says hello.")
    assert _summary(rest + turn.finish("stop")) == ["tool_calls"]
    assert turn.outcomes == ["validation_filtered", "strict_client_rule_applied"]


def test_all_calls_invalid_falls_back_at_the_end() -> None:
    turn = _turn([READ, DONE], kind="roo")
    out = turn.feed("Let me see.\n" + TRIGGER + "\n" + _invoke("open_file", path="a.py").strip())
    assert _summary(out + turn.finish("stop")) == [
        "Let me see.\n",
        (0, "attempt_completion", {"result": "Let me see."}),
        "tool_calls",
    ]
    assert turn.outcomes == ["validation_filtered", "fallback_applied"]


def test_agent_answering_without_a_call_gets_its_text_as_attempt_completion() -> None:
    turn = _turn([READ, DONE], kind="cline")
    assert _summary(turn.feed("All done.") + turn.finish("stop")) == [
        "All done.",
        (0, "attempt_completion", {"result": "All done."}),
        "tool_calls",
    ]
    assert turn.outcomes == ["xml_not_found", "strict_client_rule_applied"]


def test_sdk_text_answer_with_optional_tools_is_left_alone() -> None:
    turn = _turn([WEATHER])
    assert _summary(turn.feed("It is sunny.") + turn.finish("stop")) == ["It is sunny.", "stop"]
    assert turn.outcomes == []


def test_required_tool_choice_forces_a_call() -> None:
    turn = _turn([WEATHER], choice=ToolChoice("required"), user_text="weather in Paris?")
    assert _summary(turn.feed("I cannot check.") + turn.finish("stop")) == [
        "I cannot check.",
        (0, "get_weather", {"city": "weather in Paris?"}),
        "tool_calls",
    ]
    assert turn.outcomes == ["xml_not_found", "forced_toolcall_generated"]


def test_named_tool_choice_forces_that_tool_with_json_the_model_wrote() -> None:
    turn = _turn([WEATHER, TIME], choice=ToolChoice("function", "get_time"), user_text="time?")
    out = turn.feed('Use {"zone": "Europe/Paris"} for that.') + turn.finish("stop")
    assert _summary(out)[1:] == [(0, "get_time", {"zone": "Europe/Paris"}), "tool_calls"]


def test_forced_call_is_not_made_when_a_valid_call_was_sent() -> None:
    turn = _turn([WEATHER], choice=ToolChoice("required"), user_text="x")
    out = turn.feed(TRIGGER + _invoke("get_weather", city="Oslo").strip()) + turn.finish("stop")
    assert _summary(out) == [(0, "get_weather", {"city": "Oslo"}), "tool_calls"]
    assert turn.outcomes == []


def test_native_calls_are_numbered_after_bridged_ones() -> None:
    turn = _turn([WEATHER])
    bridged = turn.feed(TRIGGER + _invoke("get_weather", city="Oslo"))
    native = [turn.native(ToolCallStarted(0, "call_n", "get_time")), turn.native(ToolCallDelta(0, "{}"))]
    assert [o.index for o in bridged + native if isinstance(o, ToolCallStarted | ToolCallDelta)] == [0, 0, 1, 1]
