"""Reads the tool calls a model without native tool calling wrote as text, while the text streams in.

Feed the model's output chunk by chunk; each :meth:`ToolCallParser.feed` returns what is already certain:
plain text at once, except a short tail that might be the start of the trigger or of a tag, and each
call as soon as its closing tag arrives. :meth:`ToolCallParser.finish` flushes the rest, salvaging a call
cut off by the end of the output (marked ``truncated``) or giving it back as text.

Understood inside a ``<function_calls>`` block (the trigger before it is optional; tags may carry a
namespace prefix, any case, CRLF and odd whitespace; a code fence around the block is dropped):

* ``<invoke name="n"><parameter name="k">value</parameter>...</invoke>``, the canonical form;
* ``<invoke name="n">{"k": ...}</invoke>`` and ``<invoke name="n"><arguments>{...}</arguments></invoke>``;
* ``<invoke name="n"><k>value</k></invoke>``, a parameter written as its own tag;
* ``<tool_call>{"name": "n", "arguments": {...}}</tool_call>`` elements, or a bare JSON call list.

A parameter value is typed by the tool's schema when there is one, else read as JSON when it is JSON.
The output is always the same whatever the chunking, and malformed input never raises.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from enum import Enum, auto
from typing import Final

import msgspec

from shared.generation import FunctionTool
from worker.toolbridge._codec import NS, JsonObject, close_tag, decode_parameter, dumps, property_types, tool_schemas
from worker.toolbridge._markup import (
    CDATA,
    FENCE_BEFORE,
    FENCE_HOLD,
    PARTIAL_CLOSE,
    PARTIAL_TAG,
    TAG,
    LineTracker,
    Tag,
    json_calls,
    json_payload,
    strip_open_cdata,
    tag_of,
    xml_call,
)

__all__ = ("BridgeOutput", "ParsedCall", "TextOut", "ToolCallParser", "parse_output")


class TextOut(msgspec.Struct, frozen=True):
    text: str


class ParsedCall(msgspec.Struct, frozen=True):
    name: str
    arguments_json: str
    """A compact JSON object."""
    truncated: bool = False
    """The output ended inside this call; the last argument may be incomplete."""


BridgeOutput = TextOut | ParsedCall

_MAX_TAG = 512
_HOLD_MIN = 48
_ARG_WRAPPERS = frozenset({"arguments", "args_json", "args", "input", "parameters", "json"})
_CALL_ELEMENTS = frozenset({"tool_call", "function_call"})
_SEARCH_BACK = _MAX_TAG + 128


class _S(Enum):
    TEXT = auto()
    OPEN = auto()
    CALLS = auto()
    INVOKE = auto()
    PARAM = auto()
    BODY = auto()
    ELEMENT = auto()
    AFTER = auto()


_WAIT: Final = object()


class ToolCallParser:
    """One per response. ``tool_names`` fixes the spelling of names and which cut-off calls to salvage;
    ``tools`` (optional) gives the parameter schemas that decide how values are typed."""

    def __init__(self, trigger: str, tool_names: Collection[str], *, tools: Sequence[FunctionTool] = ()) -> None:
        self._trigger = trigger
        self._names = frozenset(tool_names) | {t.name for t in tools}
        self._folded = {name.lower(): name for name in self._names}
        self._schemas = tool_schemas(tools)
        trigger_alt = f"(?P<trigger>{re.escape(trigger)})|" if trigger else ""
        self._marker = re.compile(rf"{trigger_alt}<{NS}(?i:function_calls|invoke)(?=[\s/>])")
        self._hold_window = max(len(trigger), _HOLD_MIN)
        self._buf = ""
        self._out: list[BridgeOutput] = []
        self._eof = False
        self._state = _S.TEXT
        self._lines = LineTracker()
        self._raw = ""
        self._fenced = False
        self._wrapped = False
        self._block_calls = 0
        self._name = ""
        self._args: JsonObject = {}
        self._parts = 0
        self._skipping = False
        self._param = ""
        self._param_tag = ""
        self._cdata: bool | None = None
        self._json_calls = False
        self._close = close_tag("invoke")
        self._close_ends_invoke = False
        self._hint = 0

    def feed(self, chunk: str) -> list[BridgeOutput]:
        if self._eof:
            return []
        self._buf += chunk
        self._run()
        return self._take()

    def finish(self) -> list[BridgeOutput]:
        if not self._eof:
            self._eof = True
            self._run()
        return self._take()

    def _take(self) -> list[BridgeOutput]:
        out, self._out = self._out, []
        return out

    def _run(self) -> None:
        handlers = {
            _S.TEXT: self._text,
            _S.OPEN: self._open,
            _S.CALLS: self._calls,
            _S.INVOKE: self._invoke,
            _S.PARAM: self._param_value,
            _S.BODY: self._body,
            _S.ELEMENT: self._element,
            _S.AFTER: self._after,
        }
        while handlers[self._state]():
            pass

    def _emit_text(self, text: str) -> None:
        if not text:
            return
        if self._out and isinstance(self._out[-1], TextOut):
            self._out[-1] = TextOut(self._out[-1].text + text)
        else:
            self._out.append(TextOut(text))
        self._lines.update(text)

    def _is_partial_marker(self, tail: str) -> bool:
        return (bool(self._trigger) and self._trigger.startswith(tail)) or bool(PARTIAL_TAG.fullmatch(tail))

    def _hold_start(self) -> int:
        buf = self._buf
        start = len(buf)
        starters = {"<", self._trigger[:1]}
        for index in range(max(0, len(buf) - self._hold_window), len(buf)):
            if buf[index] in starters and self._is_partial_marker(buf[index:]):
                start = index
                break
        fence = FENCE_HOLD.search(buf, max(0, start - 64), start)
        return fence.start() if fence else start

    def _text(self) -> bool:
        match = self._marker.search(self._buf)
        if match is None:
            keep = len(self._buf) if self._eof else self._hold_start()
            self._emit_text(self._buf[:keep])
            self._buf = self._buf[keep:]
            return False
        before = self._buf[: match.start()]
        self._buf = self._buf[match.start() :]
        fence = FENCE_BEFORE.search(before)
        fence_text = ""
        if fence:
            self._emit_text(before[: fence.start()])
            if self._lines.at_line_start and not self._lines.in_code:
                fence_text = fence.group()
            else:
                self._emit_text(fence.group())
        else:
            self._emit_text(before)
        self._begin_block(fence_text, fenced=bool(fence_text))
        return True

    def _begin_block(self, raw: str, *, fenced: bool) -> None:
        self._state = _S.OPEN
        self._raw = raw
        self._fenced = fenced
        self._wrapped = False
        self._block_calls = 0

    def _end_block(self) -> bool:
        self._state = _S.AFTER if self._fenced else _S.TEXT
        self._raw = ""
        return True

    def _abort(self) -> bool:
        """Not a tool call after all: give back what was taken as markup, as text."""
        self._emit_text(self._raw)
        self._raw = ""
        self._fenced = False
        self._state = _S.TEXT
        return True

    def _consume(self, count: int) -> str:
        piece, self._buf = self._buf[:count], self._buf[count:]
        self._raw += piece
        return piece

    def _skip_space(self) -> object | None:
        """Skip whitespace and stray triggers; :data:`_WAIT` when the buffer ends before anything else."""
        while True:
            stripped = self._buf.lstrip()
            self._consume(len(self._buf) - len(stripped))
            if self._trigger and stripped.startswith(self._trigger):
                self._buf = stripped[len(self._trigger) :]
                continue
            if not stripped or (self._trigger.startswith(stripped) and self._trigger and not self._eof):
                return _WAIT
            return None

    def _read_tag(self) -> Tag | object | None:
        """The complete tag the buffer starts with, :data:`_WAIT` if it may still become one, else None."""
        buf = self._buf
        end = buf.find(">", 1, _MAX_TAG)
        if buf.find("<", 1, _MAX_TAG if end < 0 else end) >= 0:
            return None
        if end < 0:
            return None if self._eof or len(buf) >= _MAX_TAG else _WAIT
        match = TAG.fullmatch(buf, 0, end + 1)
        return tag_of(match) if match else None

    def _open(self) -> bool:
        if self._trigger and self._buf.startswith(self._trigger):
            self._buf = self._buf[len(self._trigger) :]
        if self._skip_space() is _WAIT:
            return self._abort() if self._eof else False
        tag = self._read_tag() if self._buf.startswith("<") else None
        if tag is _WAIT:
            return False
        if isinstance(tag, Tag) and not tag.closing and tag.name == "function_calls":
            self._consume(tag.length)
            self._wrapped = True
            self._state = _S.TEXT if tag.self_closing else _S.CALLS
            return True
        if isinstance(tag, Tag) and not tag.closing and tag.name == "invoke" and self._start_invoke(tag):
            return True
        self._consume(1)
        return self._abort()

    def _calls(self) -> bool:
        if self._skip_space() is _WAIT:
            return self._no_more_calls() if self._eof else False
        if self._buf[0] in "{[":
            return self._start_body(close_tag("function_calls"), ends_invoke=False, json_calls=True)
        tag = self._read_tag() if self._buf[0] == "<" else None
        if tag is _WAIT:
            return False
        if not isinstance(tag, Tag):
            return self._no_more_calls()
        if tag.closing:
            self._consume(tag.length)
            return self._end_block()
        if tag.name == "invoke" and self._start_invoke(tag):
            return True
        if tag.name in _CALL_ELEMENTS and not tag.self_closing:
            self._consume(tag.length)
            return self._start_body(close_tag(tag.name), ends_invoke=False, json_calls=True, state=_S.ELEMENT)
        if tag.name == "function_calls":
            self._consume(tag.length)
            return True
        return self._no_more_calls()

    def _no_more_calls(self) -> bool:
        """Something other than a call where one was expected: the block ended, or never was one."""
        return self._end_block() if self._block_calls else self._abort()

    def _start_invoke(self, tag: Tag) -> bool:
        name = tag.attrs.get("name") or tag.attrs.get("tool") or ""
        if not name:
            return False
        self._consume(tag.length)
        self._name = self._folded.get(name.lower(), name) if name not in self._names else name
        self._args = {}
        self._parts = 0
        self._skipping = False
        if tag.self_closing:
            return self._emit_call()
        self._state = _S.INVOKE
        return True

    def _emit_call(self, *, truncated: bool = False) -> bool:
        self._out.append(ParsedCall(self._name, dumps(self._args), truncated))
        self._block_calls += 1
        self._raw = ""
        if self._wrapped and not truncated:
            self._state = _S.CALLS
            return True
        return self._end_block()

    def _salvage(self) -> bool:
        if self._name and (not self._names or self._name in self._names):
            return self._emit_call(truncated=True)
        return self._abort()

    def _invoke(self) -> bool:
        if self._skipping and not self._skip_garbage():
            return self._salvage() if self._eof else False
        if self._skip_space() is _WAIT:
            return self._salvage() if self._eof else False
        if self._buf[0] in "{[":
            return self._start_body(close_tag("invoke"), ends_invoke=True)
        tag = self._read_tag() if self._buf[0] == "<" else None
        if tag is _WAIT:
            return False
        if not isinstance(tag, Tag):
            return self._invoke_garbage()
        self._consume(tag.length)
        if tag.closing:
            return self._close_in_invoke(tag.name)
        if tag.name in _ARG_WRAPPERS and not tag.self_closing:
            return self._start_body(close_tag(tag.name), ends_invoke=False)
        param = tag.attrs.get("name", "") if tag.name == "parameter" else tag.name
        if tag.self_closing:
            self._param = param
            self._store("")
            self._parts += 1
            return True
        self._param, self._param_tag, self._cdata, self._hint = param, tag.name, None, 0
        self._close = close_tag(tag.name)
        self._state = _S.PARAM
        return True

    def _close_in_invoke(self, name: str) -> bool:
        if name == "function_calls":
            self._wrapped = False
            return self._emit_call()
        if name in ("invoke", *_CALL_ELEMENTS):
            return self._emit_call()
        return True

    def _invoke_garbage(self) -> bool:
        self._consume(1)
        if not self._parts and not self._block_calls:
            return self._abort()
        self._skipping = True
        return True

    def _skip_garbage(self) -> bool:
        """Drop stray text inside an invoke up to the next tag; False while none has arrived."""
        stop = self._buf.find("<")
        self._consume(len(self._buf) if stop < 0 else stop)
        self._skipping = stop < 0
        return not self._skipping

    def _find_close(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        match = pattern.search(self._buf, self._hint)
        if match is None:
            # A closing tag is never longer than this, so no match can start before it next time.
            self._hint = max(self._hint, len(self._buf) - _SEARCH_BACK)
        return match

    def _param_value(self) -> bool:
        if self._cdata is None:
            head = self._buf.lstrip()
            if len(head) < len(CDATA) and CDATA.startswith(head) and not self._eof:
                return False
            self._cdata = head.startswith(CDATA)
            if self._cdata:
                self._close = close_tag(self._param_tag, after_cdata=True)
        match = self._find_close(self._close)
        if match is None:
            if not self._eof:
                return False
            raw = PARTIAL_CLOSE.sub("", self._buf)
            self._consume(len(self._buf))
            self._store(strip_open_cdata(raw))
            return self._salvage()
        raw = self._consume(match.start())
        self._consume(match.end() - match.start())
        self._store(raw)
        self._parts += 1
        self._state = _S.INVOKE
        return True

    def _store(self, raw: str) -> None:
        if self._param:
            types = property_types(self._schemas.get(self._name), self._param)
            self._args[self._param] = decode_parameter(raw, types)

    def _start_body(
        self, close: re.Pattern[str], *, ends_invoke: bool, json_calls: bool = False, state: _S = _S.BODY
    ) -> bool:
        self._close, self._close_ends_invoke, self._hint = close, ends_invoke, 0
        self._json_calls = json_calls
        self._state = state
        return True

    def _body(self) -> bool:
        match = self._find_close(self._close)
        if match is None and not self._eof:
            return False
        text = self._consume(len(self._buf) if match is None else match.start())
        if match is not None:
            self._consume(match.end() - match.start())
        value = json_payload(text, repair=match is None)
        if self._json_calls:
            return self._emit_json_calls(json_calls(value) or xml_call(text), truncated=match is None)
        if isinstance(value, dict):
            self._args.update(value)
        elif text.strip():
            self._args["raw_arguments"] = text.strip()
        self._parts += 1
        if match is None:
            return self._salvage() if isinstance(value, dict) or self._parts > 1 else self._abort()
        if self._close_ends_invoke:
            return self._emit_call()
        self._state = _S.INVOKE
        return True

    def _element(self) -> bool:
        return self._body()

    def _emit_json_calls(self, calls: list[tuple[str, JsonObject]], *, truncated: bool) -> bool:
        if truncated and self._names:
            calls = [call for call in calls if self._folded.get(call[0].lower()) is not None]
        if not calls:
            return self._abort() if truncated else self._no_more_calls()
        for name, args in calls:
            self._out.append(ParsedCall(self._folded.get(name.lower(), name), dumps(args), truncated))
        self._block_calls += len(calls)
        self._raw = ""
        if truncated or self._state is _S.BODY:
            return self._end_block()
        self._state = _S.CALLS
        return True

    def _after(self) -> bool:
        stripped = self._buf.lstrip()
        if not stripped:
            if self._eof:
                self._buf, self._fenced, self._state = "", False, _S.TEXT
            return False
        if stripped.startswith("```"):
            rest = stripped[3:]
            line, newline, after = rest.partition("\n")
            if not line.strip(" \t\r"):
                if not newline and not self._eof:
                    return False
                self._buf = after
            self._fenced = False
            self._state = _S.TEXT
            return True
        if not self._eof and ("```".startswith(stripped) or self._is_partial_marker(stripped)):
            return False
        if self._marker.match(stripped):
            self._buf = stripped
            self._begin_block("", fenced=True)
            return True
        self._fenced = False
        self._state = _S.TEXT
        return True


def parse_output(text: str, trigger: str, tools: Sequence[FunctionTool] = ()) -> list[BridgeOutput]:
    """Parse a whole response at once; consecutive text is merged."""
    parser = ToolCallParser(trigger, {t.name for t in tools}, tools=tools)
    return parser.feed(text) + parser.finish()
