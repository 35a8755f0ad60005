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

This module is the top of three layers: the text around blocks (finding the trigger or a block, holding
back what may become one, code fences). A block itself is read by :mod:`~worker.toolbridge._blocks`,
on the buffer and tag reading of :mod:`~worker.toolbridge._scanner`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from shared.generation import FunctionTool
from worker.toolbridge._blocks import CallBlockReader
from worker.toolbridge._codec import NS
from worker.toolbridge._markup import FENCE_BEFORE, FENCE_HOLD, PARTIAL_TAG
from worker.toolbridge._scanner import State
from worker.toolbridge.parsed import BridgeOutput

__all__ = ("ToolCallParser", "parse_output")

_HOLD_MIN = 48


class ToolCallParser(CallBlockReader):
    """One per response. ``tool_names`` fixes the spelling of names and which cut-off calls to salvage;
    ``tools`` (optional) gives the parameter schemas that decide how values are typed."""

    def __init__(self, trigger: str, tool_names: Collection[str], *, tools: Sequence[FunctionTool] = ()) -> None:
        super().__init__(trigger, tool_names, tools)
        trigger_alt = f"(?P<trigger>{re.escape(trigger)})|" if trigger else ""
        self._marker = re.compile(rf"{trigger_alt}<{NS}(?i:function_calls|invoke)(?=[\s/>])")
        self._hold_window = max(len(trigger), _HOLD_MIN)

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

    def _run(self) -> None:
        handlers = {
            State.TEXT: self._text,
            State.OPEN: self._open,
            State.CALLS: self._calls,
            State.INVOKE: self._invoke,
            State.PARAM: self._param_value,
            State.BODY: self._body,
            State.ELEMENT: self._element,
            State.AFTER: self._after,
        }
        while handlers[self._state]():
            pass

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

    def _after(self) -> bool:
        stripped = self._buf.lstrip()
        if not stripped:
            if self._eof:
                self._buf, self._fenced, self._state = "", False, State.TEXT
            return False
        if stripped.startswith("```"):
            rest = stripped[3:]
            line, newline, after = rest.partition("\n")
            if not line.strip(" \t\r"):
                if not newline and not self._eof:
                    return False
                self._buf = after
            self._fenced = False
            self._state = State.TEXT
            return True
        if not self._eof and ("```".startswith(stripped) or self._is_partial_marker(stripped)):
            return False
        if self._marker.match(stripped):
            self._buf = stripped
            self._begin_block("", fenced=True)
            return True
        self._fenced = False
        self._state = State.TEXT
        return True


def parse_output(text: str, trigger: str, tools: Sequence[FunctionTool] = ()) -> list[BridgeOutput]:
    """Parse a whole response at once; consecutive text is merged."""
    parser = ToolCallParser(trigger, {t.name for t in tools}, tools=tools)
    return parser.feed(text) + parser.finish()
