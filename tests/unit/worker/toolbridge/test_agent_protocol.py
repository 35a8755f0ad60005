"""Coding agents with their own XML tool protocol: the reply stays theirs, under their one-tool rules."""

from __future__ import annotations

from shared.events import Finished, TextDelta
from shared.generation import Message, TextPart
from worker.providers import ProviderOutput
from worker.toolbridge import AgentXmlTurn, OutputSanitizer, protocol_tools

ROO_PROMPT = """You are Roo, a skilled software engineer.

TOOL USE

Tools are called with XML-style tags, one per message:

<actual_tool_name>
<parameter1_name>value1</parameter1_name>
</actual_tool_name>

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

## fetch_weather
Usage:
<fetch_weather>
<city>City name</city>
</fetch_weather>

## attempt_completion
Usage:
<attempt_completion>
<result>Your final result</result>
</attempt_completion>
"""
TOOLS = frozenset({"read_file", "write_to_file", "fetch_weather", "attempt_completion"})


def _text(outputs: list[ProviderOutput]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, TextDelta))


def _turn(tools: frozenset[str] = TOOLS) -> AgentXmlTurn:
    return AgentXmlTurn(tools, OutputSanitizer("roo"), wrap=True)


def _run(text: str, step: int = 0, tools: frozenset[str] = TOOLS) -> tuple[str, AgentXmlTurn]:
    turn = _turn(tools)
    pieces = [text[i : i + step] for i in range(0, len(text), step)] if step else [text]
    out = [o for piece in pieces for o in turn.feed(piece)] + turn.finish("stop")
    assert isinstance(out[-1], Finished) and out[-1].finish_reason == "stop"
    return _text(out), turn


def test_tools_come_from_the_system_prompt() -> None:
    assert protocol_tools([Message("system", [TextPart(ROO_PROMPT)])]) == TOOLS
    assert protocol_tools([Message("system", [TextPart("You are helpful.")])]) == frozenset()
    assert protocol_tools([Message("user", [TextPart(ROO_PROMPT)])]) == frozenset()


def test_first_tool_passes_intact_and_the_rest_is_dropped() -> None:
    first = "<read_file>\n<path>src/app.py</path>\n</read_file>"
    reply = f"<thinking>Need the file.\x07</thinking>\n{first}\n\nThen:\n<read_file>\n<path>b.py</path>\n</read_file>"
    for step in (0, 1, 3, 7):
        text, turn = _run(reply, step)
        assert text == f"<thinking>Need the file.</thinking>\n{first}"
        assert turn.outcomes == ["strict_client_rule_applied"]


def test_text_streams_at_once_and_only_a_possible_tag_waits() -> None:
    turn = _turn()
    assert _text(turn.feed("Reading it <rea")) == "Reading it "
    assert _text(turn.feed("d_file>\n<path>a.")) == "<read_file>\n<path>a."
    assert _text(turn.feed("py</path>\n</read_f")) == "py</path>\n"
    assert _text(turn.feed("ile> and more")) == "</read_file>"
    assert _text(turn.feed("<write_to_file>")) == ""
    assert turn.outcomes == []


def test_misspelt_tool_tags_are_repaired() -> None:
    text, turn = _run("<write_file>\n<path>a.txt</path>\n<content>hi</content>\n</write_file>", step=5)
    assert text == "<write_to_file>\n<path>a.txt</path>\n<content>hi</content>\n</write_to_file>"
    assert turn.outcomes == []


def test_a_reply_without_a_tool_is_closed_with_attempt_completion() -> None:
    text, turn = _run("<thinking>Easy.</thinking>\nParis is the capital.", step=4)
    completion = "<attempt_completion>\n<result>\nParis is the capital.\n</result>\n</attempt_completion>"
    assert text == f"<thinking>Easy.</thinking>\nParis is the capital.\n\n{completion}"
    assert turn.outcomes == ["xml_not_found", "strict_client_rule_applied"]


def test_no_wrap_without_attempt_completion_or_text() -> None:
    text, turn = _run("Just text.", tools=frozenset({"read_file"}))
    assert text == "Just text." and turn.outcomes == ["xml_not_found"]
    text, _ = _run("<thinking>hmm</thinking>")
    assert text == "<thinking>hmm</thinking>"


def test_a_tool_cut_off_by_the_end_is_left_as_it_is() -> None:
    text, turn = _run("<read_file>\n<path>src/a", step=2)
    assert text == "<read_file>\n<path>src/a" and turn.outcomes == []
