"""Pieces of the response parser: code fences, reading one tag, and the JSON and element call forms."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from worker.toolbridge._codec import FAIL, NS, JsonObject, loads, repair_json, unescape_attr

__all__ = (
    "CDATA",
    "FENCE_BEFORE",
    "FENCE_HOLD",
    "PARTIAL_CLOSE",
    "PARTIAL_TAG",
    "TAG",
    "LineTracker",
    "Tag",
    "json_calls",
    "json_payload",
    "strip_open_cdata",
    "tag_of",
    "xml_call",
)

CDATA = "<![CDATA["
TAG = re.compile(rf"<\s{{0,8}}(/?)\s{{0,8}}{NS}([A-Za-z_][\w.-]*)(\s[^<>]*?)?\s*(/?)>", re.S)
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`/]+))""")
PARTIAL_CLOSE = re.compile(r"<(?:/\s{0,8}[\w:.-]*\s{0,8})?$")
"""What a closing tag cut off by the end of the output leaves behind."""
FENCE_HOLD = re.compile(r"`{1,2}$|```[\w+.-]{0,24}[ \t\r\n]{0,32}$")
"""The end of a text that may still become a fence opening a tool-call block; never shorter than what
:data:`FENCE_BEFORE` matches, so a fence is always still held back when the block behind it arrives."""
FENCE_BEFORE = re.compile(r"(```[\w+.-]{0,24}[ \t]{0,8}\r?\n[ \t\r\n]{0,16})$")
_FENCE_LINE = re.compile(r"[ \t]*```")


class LineTracker:
    """Follows the text already given out: whether it is inside a fenced code block, and whether its last
    line is still blank. Fence parity tells a fence opening a tool-call block from one closing code."""

    def __init__(self) -> None:
        self.in_code = False
        self.at_line_start = True
        self._line = ""

    def update(self, text: str) -> None:
        *complete, last = text.split("\n")
        for line in complete:
            if _FENCE_LINE.match((self._line + line)[:64]):
                self.in_code = not self.in_code
            self._line = ""
        self._line = (self._line + last)[:64]
        blank = not last.strip(" \t")
        self.at_line_start = blank if complete else self.at_line_start and blank


def _word_prefix(word: str) -> str:
    pattern = ""
    for char in reversed(word):
        pattern = f"(?:{re.escape(char)}{pattern})?"
    return pattern


PARTIAL_TAG = re.compile(
    rf"<(?:[A-Za-z_][\w.-]{{0,24}}(?::(?i:{_word_prefix('function_calls')}|{_word_prefix('invoke')}))?)?"
)


class Tag(msgspec.Struct, frozen=True):
    closing: bool
    name: str
    attrs: dict[str, str]
    self_closing: bool
    length: int


def tag_of(match: re.Match[str]) -> Tag:
    attrs: dict[str, str] = {}
    for attr in _ATTR.finditer(match.group(3) or ""):
        value = next(v for v in attr.group(2, 3, 4) if v is not None)
        attrs[attr.group(1).rpartition(":")[2].lower()] = unescape_attr(value).strip()
    return Tag(match.group(1) == "/", match.group(2).lower(), attrs, match.group(4) == "/", match.end())


def strip_open_cdata(raw: str) -> str:
    stripped = raw.lstrip()
    if stripped.startswith(CDATA):
        return stripped[len(CDATA) :].removesuffix("]]>").removesuffix("]]").removesuffix("]")
    return raw


def json_payload(text: str, *, repair: bool) -> Any:
    text = text.strip()
    if repair:
        text = PARTIAL_CLOSE.sub("", text)
    text = strip_open_cdata(text).strip() if text.startswith(CDATA) else text
    value = loads(text)
    return repair_json(text) if value is FAIL and repair else value


_CHILD = re.compile(
    rf"<\s{{0,8}}{NS}(tool|tool_name|name|args_json|arguments|args|parameters|input)\s{{0,8}}>(.*?)"
    rf"<\s{{0,8}}/\s{{0,8}}{NS}\1\s{{0,8}}>",
    re.S | re.I,
)


def xml_call(text: str) -> list[tuple[str, JsonObject]]:
    """The ``<tool>name</tool><args_json>{...}</args_json>`` element form."""
    fields = {match.group(1).lower(): match.group(2) for match in _CHILD.finditer(text)}
    name = unescape_attr(fields.get("tool") or fields.get("tool_name") or fields.get("name") or "").strip()
    body = next((fields[k] for k in ("args_json", "arguments", "args", "parameters", "input") if k in fields), "")
    if not name:
        return []
    args = json_payload(body, repair=False) if body.strip() else {}
    return [(name, args if isinstance(args, dict) else {"raw_arguments": body.strip()})]


def json_calls(value: Any) -> list[tuple[str, JsonObject]]:
    items = value if isinstance(value, list) else [value]
    calls: list[tuple[str, JsonObject]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        nested = item.get("function")
        function: JsonObject = nested if isinstance(nested, dict) else item
        name = function.get("name") or function.get("tool")
        if not isinstance(name, str) or not name.strip():
            continue
        args: Any = next((function[k] for k in ("arguments", "parameters", "input", "args") if k in function), {})
        if isinstance(args, str):
            args = loads(args) if args.strip() else {}
        calls.append((name.strip(), args if isinstance(args, dict) else {}))
    return calls
