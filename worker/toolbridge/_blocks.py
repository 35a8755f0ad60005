"""The middle layer of the response parser: reading one tool-call block, from its opening tag (or a bare
``<invoke>``) to its end, call by call.

Each call is put out the moment its closing tag has been read. Whatever turns out not to be a call is
given back as text (:meth:`~worker.toolbridge._scanner.Scanner._abort`); a call cut off by the end of the
output is salvaged, marked ``truncated``, when its tool is known.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from shared.generation import FunctionTool
from worker.toolbridge._codec import JsonObject, close_tag, decode_parameter, dumps, property_types, tool_schemas
from worker.toolbridge._markup import CDATA, PARTIAL_CLOSE, Tag, json_calls, json_payload, strip_open_cdata, xml_call
from worker.toolbridge._scanner import MAX_TAG, WAIT, Scanner, State
from worker.toolbridge.parsed import ParsedCall

__all__ = ("CallBlockReader",)

_ARG_WRAPPERS = frozenset({"arguments", "args_json", "args", "input", "parameters", "json"})
_CALL_ELEMENTS = frozenset({"tool_call", "function_call"})
_SEARCH_BACK = MAX_TAG + 128


class CallBlockReader(Scanner):
    """The states from a block's opening to its end. ``tool_names`` fixes the spelling of names and which
    cut-off calls to salvage; ``tools`` gives the parameter schemas that decide how values are typed."""

    def __init__(self, trigger: str, tool_names: Collection[str], tools: Sequence[FunctionTool]) -> None:
        super().__init__(trigger)
        self._names = frozenset(tool_names) | {t.name for t in tools}
        self._folded = {name.lower(): name for name in self._names}
        self._schemas = tool_schemas(tools)
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

    def _begin_block(self, raw: str, *, fenced: bool) -> None:
        self._state = State.OPEN
        self._raw = raw
        self._fenced = fenced
        self._wrapped = False
        self._block_calls = 0

    def _open(self) -> bool:
        if self._trigger and self._buf.startswith(self._trigger):
            self._buf = self._buf[len(self._trigger) :]
        if self._skip_space() is WAIT:
            return self._abort() if self._eof else False
        tag = self._read_tag() if self._buf.startswith("<") else None
        if tag is WAIT:
            return False
        if isinstance(tag, Tag) and not tag.closing and tag.name == "function_calls":
            self._consume(tag.length)
            self._wrapped = True
            self._state = State.TEXT if tag.self_closing else State.CALLS
            return True
        if isinstance(tag, Tag) and not tag.closing and tag.name == "invoke" and self._start_invoke(tag):
            return True
        self._consume(1)
        return self._abort()

    def _calls(self) -> bool:
        if self._skip_space() is WAIT:
            return self._no_more_calls() if self._eof else False
        if self._buf[0] in "{[":
            return self._start_body(close_tag("function_calls"), ends_invoke=False, json_calls=True)
        tag = self._read_tag() if self._buf[0] == "<" else None
        if tag is WAIT:
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
            return self._start_body(close_tag(tag.name), ends_invoke=False, json_calls=True, state=State.ELEMENT)
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
        self._state = State.INVOKE
        return True

    def _emit_call(self, *, truncated: bool = False) -> bool:
        self._out.append(ParsedCall(self._name, dumps(self._args), truncated))
        self._block_calls += 1
        self._raw = ""
        if self._wrapped and not truncated:
            self._state = State.CALLS
            return True
        return self._end_block()

    def _salvage(self) -> bool:
        if self._name and (not self._names or self._name in self._names):
            return self._emit_call(truncated=True)
        return self._abort()

    def _invoke(self) -> bool:
        if self._skipping and not self._skip_garbage():
            return self._salvage() if self._eof else False
        if self._skip_space() is WAIT:
            return self._salvage() if self._eof else False
        if self._buf[0] in "{[":
            return self._start_body(close_tag("invoke"), ends_invoke=True)
        tag = self._read_tag() if self._buf[0] == "<" else None
        if tag is WAIT:
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
        self._state = State.PARAM
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
        self._state = State.INVOKE
        return True

    def _store(self, raw: str) -> None:
        if self._param:
            types = property_types(self._schemas.get(self._name), self._param)
            self._args[self._param] = decode_parameter(raw, types)

    def _start_body(
        self, close: re.Pattern[str], *, ends_invoke: bool, json_calls: bool = False, state: State = State.BODY
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
        self._state = State.INVOKE
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
        if truncated or self._state is State.BODY:
            return self._end_block()
        self._state = State.CALLS
        return True
