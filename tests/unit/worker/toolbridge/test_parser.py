"""The incremental tool-call parser: forms it reads, what it tolerates, and that chunking never matters."""

from __future__ import annotations

import json
import time

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.generation import FunctionTool, ToolCall
from worker.toolbridge import BridgeOutput, ParsedCall, TextOut, ToolCallParser, encode_calls, parse_output

TRIGGER = "<<CALL_t3st0k3n>>"
NS = "ant" + "ml:"  # written apart so no tool reading this file takes it for markup


def _tool(name: str, properties: dict[str, str] | None = None) -> FunctionTool:
    if properties is None:
        return FunctionTool(name)
    schema = {"type": "object", "properties": {k: {"type": t} for k, t in properties.items()}}
    return FunctionTool(name, parameters=msgspec.Raw(json.dumps(schema).encode()))


TOOLS = [
    _tool("read_file", {"path": "string", "limit": "integer"}),
    _tool("write_to_file", {"path": "string", "content": "string"}),
    _tool("attempt_completion", {"result": "string"}),
    _tool("search", {"query": "string", "filters": "object", "tags": "array", "exact": "boolean"}),
]


def _merge(outputs: list[BridgeOutput]) -> list[BridgeOutput]:
    merged: list[BridgeOutput] = []
    for out in outputs:
        if isinstance(out, TextOut) and merged and isinstance(merged[-1], TextOut):
            merged[-1] = TextOut(merged[-1].text + out.text)
        elif not (isinstance(out, TextOut) and not out.text):
            merged.append(out)
    return merged


def _chunked(text: str, cuts: list[int], tools: list[FunctionTool] = TOOLS) -> list[BridgeOutput]:
    parser = ToolCallParser(TRIGGER, {t.name for t in tools}, tools=tools)
    out: list[BridgeOutput] = []
    last = 0
    for cut in [*sorted(cuts), len(text)]:
        out += parser.feed(text[last:cut])
        last = cut
    return _merge(out + parser.finish())


def _whole(text: str, tools: list[FunctionTool] = TOOLS) -> list[BridgeOutput]:
    return _merge(parse_output(text, TRIGGER, tools))


def _call(name: str, **args: object) -> ParsedCall:
    return ParsedCall(name, json.dumps(args, separators=(",", ":"), ensure_ascii=False))


def _block(*invokes: str) -> str:
    return f"{TRIGGER}\n<function_calls>\n" + "\n".join(invokes) + "\n</function_calls>"


def _invoke(name: str, **params: str) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items())
    return f'<invoke name="{name}">\n{body}</invoke>'


# -- the canonical form -------------------------------------------------------------------------------


def test_text_then_call_then_text() -> None:
    text = "Let me look.\n\n" + _block(_invoke("read_file", path="src/a.py", limit="20")) + "\nDone."
    assert _whole(text) == [
        TextOut("Let me look.\n\n"),
        _call("read_file", path="src/a.py", limit=20),
        TextOut("\nDone."),
    ]


def test_several_calls_in_one_block() -> None:
    text = _block(_invoke("read_file", path="a"), _invoke("read_file", path="b"))
    assert _whole(text) == [_call("read_file", path="a"), _call("read_file", path="b")]


def test_call_is_emitted_as_soon_as_its_invoke_closes() -> None:
    parser = ToolCallParser(TRIGGER, {"read_file"}, tools=TOOLS)
    assert parser.feed("Hi " + TRIGGER + "\n<function_calls>\n") == [TextOut("Hi ")]
    assert parser.feed('<invoke name="read_file"><parameter name="path">x</parameter>') == []
    assert parser.feed("</invoke>") == [_call("read_file", path="x")]
    assert parser.feed("\n</function_calls>") == []
    assert parser.finish() == []


def test_plain_text_streams_out_at_once() -> None:
    parser = ToolCallParser(TRIGGER, set())
    assert parser.feed("Hello, wor") == [TextOut("Hello, wor")]
    assert parser.feed("ld <b>bold</b> and a < b") == [TextOut("ld <b>bold</b> and a < b")]
    assert parser.feed(" then <") == [TextOut(" then ")]
    assert parser.feed("i") == []
    assert parser.feed("mg>") == [TextOut("<img>")]
    assert parser.finish() == []


def test_held_back_suffix_is_released_at_finish() -> None:
    parser = ToolCallParser(TRIGGER, set())
    assert parser.feed("see <function_cal") == [TextOut("see ")]
    assert parser.finish() == [TextOut("<function_cal")]


def test_values_are_typed_by_the_schema() -> None:
    text = _block(
        _invoke("search", query="42", filters='{"lang": "py"}', tags='["a", "b"]', exact="true"),
        _invoke("read_file", path="007", limit=" 12 "),
    )
    assert _whole(text) == [
        _call("search", query="42", filters={"lang": "py"}, tags=["a", "b"], exact=True),
        _call("read_file", path="007", limit=12),
    ]


def test_values_without_schema_are_json_when_they_are_json() -> None:
    text = _block(_invoke("other", n="3", obj='{"a": [1, 2]}', s="hello", q='"quoted"', bad="{nope"))
    assert _whole(text) == [_call("other", n=3, obj={"a": [1, 2]}, s="hello", q="quoted", bad="{nope")]


def test_multiline_value_loses_only_the_layout_line_breaks() -> None:
    content = "def f():\n    return 1\n"
    text = _block(_invoke("write_to_file", path="f.py", content=f"\n{content}\n"))
    assert _whole(text) == [_call("write_to_file", path="f.py", content=content)]


def test_value_is_never_xml_unescaped() -> None:
    text = _block(_invoke("write_to_file", path="a.html", content="a &amp; b <br> &lt;"))
    assert _whole(text) == [_call("write_to_file", path="a.html", content="a &amp; b <br> &lt;")]


def test_cdata_value_may_hold_a_closing_tag() -> None:
    text = _block(_invoke("write_to_file", path="p", content="<![CDATA[x</parameter>y]]>"))
    assert _whole(text) == [_call("write_to_file", path="p", content="x</parameter>y")]


# -- tolerance ----------------------------------------------------------------------------------------


def test_missing_trigger_bare_function_calls_block() -> None:
    text = (
        "Sure: <function_calls><invoke name='read_file'><parameter name='path'>x</parameter></invoke></function_calls>"
    )
    assert _whole(text) == [TextOut("Sure: "), _call("read_file", path="x")]


def test_bare_invoke_after_trigger_and_without_it() -> None:
    assert _whole(TRIGGER + _invoke("read_file", path="x")) == [_call("read_file", path="x")]
    assert _whole("a " + _invoke("read_file", path="x") + " b") == [
        TextOut("a "),
        _call("read_file", path="x"),
        TextOut(" b"),
    ]


def test_code_fence_around_the_block_is_dropped() -> None:
    text = "Reading it.\n```xml\n" + _block(_invoke("read_file", path="x")) + "\n```\nAfter."
    assert _whole(text) == [TextOut("Reading it.\n"), _call("read_file", path="x"), TextOut("After.")]


def test_closing_fence_of_a_real_code_block_is_kept() -> None:
    text = "```python\nprint(1)\n```\n" + _block(_invoke("read_file", path="x"))
    assert _whole(text) == [TextOut("```python\nprint(1)\n```\n"), _call("read_file", path="x")]


def test_crlf_namespaces_case_and_odd_whitespace() -> None:
    text = (
        f"{TRIGGER}\r\n<{NS}function_calls>\r\n  < {NS}Invoke  name = 'READ_FILE' >\r\n"
        f'\t<{NS}parameter name="path">a.py</ {NS}parameter >\r\n'
        f'\t<{NS}parameter name="limit">\r\n5\r\n</{NS}parameter>\r\n</{NS}invoke>\r\n</{NS}function_calls>'
    )
    assert _whole(text) == [_call("read_file", path="a.py", limit=5)]


def test_json_argument_forms() -> None:
    text = _block(
        '<invoke name="read_file">{"path": "a", "limit": 1}</invoke>',
        '<invoke name="read_file"><arguments>{"path": "b"}</arguments></invoke>',
        '<invoke name="read_file"><args_json><![CDATA[{"path": "<c>"}]]></args_json></invoke>',
    )
    assert _whole(text) == [
        _call("read_file", path="a", limit=1),
        _call("read_file", path="b"),
        _call("read_file", path="<c>"),
    ]


def test_tool_call_elements_and_json_lists() -> None:
    text = (
        '<function_calls><tool_call>{"name": "read_file", "arguments": {"path": "a"}}</tool_call>'
        '<function_call><tool>read_file</tool><args_json>{"path": "b"}</args_json></function_call>'
        "</function_calls>"
        '<function_calls>[{"name": "read_file", "arguments": "{\\"path\\": \\"c\\"}"}]</function_calls>'
    )
    assert _whole(text) == [_call("read_file", path="a"), _call("read_file", path="b"), _call("read_file", path="c")]


def test_parameter_written_as_its_own_tag() -> None:
    text = _block('<invoke name="write_to_file"><path>a.txt</path><content>hi</content></invoke>')
    assert _whole(text) == [_call("write_to_file", path="a.txt", content="hi")]


def test_prose_mentioning_the_tags_stays_text() -> None:
    for text in (
        "Use the <function_calls> tag, then <invoke> inside it.",
        "An <invoke> without a name is not a call.",
        "<function_calls> hello </function_calls>",
        f"{TRIGGER} but then nothing",
    ):
        expected = text.replace(TRIGGER, "")
        assert _whole(text) == [TextOut(expected)]


def test_fenced_false_start_is_given_back_verbatim() -> None:
    text = "Example:\n```xml\n<function_calls> goes here\n```\nend"
    assert _whole(text) == [TextOut(text)]
    assert _chunked(text, list(range(len(text)))) == [TextOut(text)]


def test_trigger_split_across_chunks() -> None:
    parser = ToolCallParser(TRIGGER, {"read_file"}, tools=TOOLS)
    assert parser.feed("ok <<CA") == [TextOut("ok ")]
    assert parser.feed("LL_t3st0k3n>>\n<function_calls><invoke name=") == []
    assert parser.feed('"read_file"/></function_calls>') == [ParsedCall("read_file", "{}")]


def test_text_after_calls_without_a_closing_block_is_kept() -> None:
    text = "<function_calls>\n" + _invoke("read_file", path="x") + "\nI have called it."
    assert _whole(text) == [_call("read_file", path="x"), TextOut("I have called it.")]


def test_truncated_parameter_is_salvaged_and_marked() -> None:
    text = (
        f'{TRIGGER}\n<function_calls>\n<invoke name="attempt_completion">\n'
        '<parameter name="result">All done, the fi</param'
    )
    assert _whole(text) == [ParsedCall("attempt_completion", '{"result":"All done, the fi"}', truncated=True)]


def test_truncated_json_arguments_are_repaired() -> None:
    text = f'{TRIGGER}<function_calls><invoke name="read_file">{{"path": "src/ma'
    assert _whole(text) == [ParsedCall("read_file", '{"path":"src/ma"}', truncated=True)]


def test_truncated_call_of_an_unknown_tool_becomes_text() -> None:
    text = f'{TRIGGER}<function_calls><invoke name="nope"><parameter name="a">1'
    assert _whole(text) == [TextOut('<function_calls><invoke name="nope"><parameter name="a">1')]


def test_truncated_open_tag_becomes_text() -> None:
    assert _whole("before <function_calls") == [TextOut("before <function_calls")]
    assert _whole(f"before {TRIGGER}\n<funct") == [TextOut("before \n<funct")]


def test_feed_after_finish_is_ignored() -> None:
    parser = ToolCallParser(TRIGGER, set())
    assert parser.feed("a <") == [TextOut("a ")]
    assert parser.finish() == [TextOut("<")]
    assert parser.feed("b") == []
    assert parser.finish() == []


def test_large_value_streams_in_linear_time() -> None:
    content = "line of code <x> & stuff\n" * 8000
    text = _block(_invoke("write_to_file", path="big.txt", content=content))
    started = time.perf_counter()
    out = _chunked(text, list(range(0, len(text), 7)))
    assert time.perf_counter() - started < 5
    assert out == [_call("write_to_file", path="big.txt", content=content.removesuffix("\n"))]


# -- properties ---------------------------------------------------------------------------------------

_near_misses = st.sampled_from(
    ["<", ">", "</", "`", "``", "```", "```xml\n", "\n", "\r\n", " ", "<f", "<func", "<in", "<<", "<<CALL_", "/>"]
)
_plain = st.lists(st.one_of(st.text(max_size=8), _near_misses), max_size=20).map("".join)


def _has_marker(text: str) -> bool:
    lowered = text.lower()
    return TRIGGER in text or "function_calls" in lowered or "invoke" in lowered


@settings(max_examples=200, deadline=None)
@given(_plain)
def test_plain_text_round_trips_unchanged(text: str) -> None:
    if _has_marker(text):
        return
    assert _whole(text) == ([TextOut(text)] if text else [])


_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_tricky = st.sampled_from(
    [
        *("</parameter>", "<![CDATA[x]]>", "</invoke>", "</function_calls>", "\n", "\r\n", " 42 ", '"q"', "true"),
        *("null", "[1]", "{}", "", TRIGGER, "```", "a\n", "\nb", "<", "]]>", "\r", "<function_calls>", " "),
    ]
)
_strings = st.one_of(st.text(), _tricky, st.lists(st.one_of(st.text(max_size=4), _tricky), max_size=5).map("".join))
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _strings
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_types = st.sampled_from(["string", "integer", "number", "boolean", "array", "object", "null"])
_tool_specs = st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,12}", fullmatch=True),
    st.none() | st.dictionaries(_keys, _types, max_size=4),
    min_size=1,
    max_size=3,
)


@st.composite
def _tools_and_calls(draw: st.DrawFn) -> tuple[list[FunctionTool], list[tuple[str, dict[str, object]]]]:
    specs = draw(_tool_specs)
    tools = [_tool(name, props) for name, props in specs.items()]
    names = st.sampled_from(sorted(specs))
    calls = draw(st.lists(st.tuples(names, st.dictionaries(_keys, _values, max_size=4)), min_size=1, max_size=4))
    return tools, calls


def _encoded(calls: list[tuple[str, dict[str, object]]], tools: list[FunctionTool]) -> str:
    tool_calls = [ToolCall(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(calls)]
    return encode_calls(tool_calls, TRIGGER, tools)


@settings(max_examples=200, deadline=None)
@given(_tools_and_calls())
def test_encoded_calls_parse_back_to_the_same_calls(
    case: tuple[list[FunctionTool], list[tuple[str, dict[str, object]]]],
) -> None:
    tools, calls = case
    parsed = _whole(_encoded(calls, tools), tools)
    expected = [ParsedCall(name, json.dumps(args, separators=(",", ":"), ensure_ascii=False)) for name, args in calls]
    assert parsed == expected


_fragments = st.sampled_from(
    [
        *(TRIGGER, TRIGGER[:7], "```xml\n", "\n```\n", "```\n", "\n```", "```python\nx = 1\n```\n"),
        *("<function_calls>", "<function_calls", "</function_calls>", f"<{NS}function_calls>"),
        *('<invoke name="read_file">', '<invoke name="zz"/>', "<invoke>", "</invoke>", "</ invoke >"),
        *("< invoke name='read_file' >", '<parameter name="path">', '<parameter name="limit">', "</parameter>"),
        *("<path>", "</path>", '{"path": "a', "{", "}", "[", "]", '"', "<tool_call>", "</tool_call>"),
        *("<![CDATA[", "<![CD", "]]>", "\r\n", "  ", "\u00a0", "x"),
    ]
)


@st.composite
def _model_output(draw: st.DrawFn) -> str:
    _, calls = draw(_tools_and_calls())
    block = st.just(_encoded(calls, TOOLS))
    parts = draw(st.lists(st.one_of(_plain, _fragments, _fragments, block), max_size=16))
    text = "".join(parts)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_same_result(data: st.DataObject) -> None:
    text = data.draw(_model_output())
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert _chunked(text, cuts) == _whole(text)


@settings(max_examples=50, deadline=None)
@given(_model_output())
def test_character_by_character_gives_the_same_result(text: str) -> None:
    assert _chunked(text, list(range(len(text)))) == _whole(text)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.lists(st.integers(0, 200), max_size=8))
def test_arbitrary_input_never_raises(text: str, cuts: list[int]) -> None:
    _chunked(text, [c for c in cuts if c <= len(text)])
