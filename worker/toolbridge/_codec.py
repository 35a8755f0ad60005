"""JSON and parameter-value helpers shared by the prompt encoder, the parser and the validator.

The prompt encoder and the parser must agree byte for byte on how a parameter value is written and read
back, so both go through :func:`decode_parameter` here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from msgspec import UNSET

from shared.generation import FunctionTool

__all__ = (
    "FAIL",
    "NS",
    "JsonObject",
    "close_tag",
    "coerce_scalar",
    "decode_parameter",
    "dumps",
    "json_types",
    "loads",
    "property_types",
    "repair_json",
    "tool_schemas",
    "unescape_attr",
)

JsonObject = dict[str, Any]


class _Fail:
    """Returned instead of raising when a text is not the JSON we wanted."""

    def __repr__(self) -> str:
        return "FAIL"


FAIL: Final = _Fail()

_CDATA_OPEN = "<![CDATA["
_CDATA_CLOSE = "]]>"
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
NS = r"(?:[A-Za-z_][\w.-]{0,24}:)?"
"""An optional XML namespace prefix on a tag name, as in ``<ns:invoke>``."""
_ENTITIES = {"&quot;": '"', "&apos;": "'", "&lt;": "<", "&gt;": ">", "&amp;": "&"}
_ENTITY = re.compile("|".join(map(re.escape, _ENTITIES)))
_KEY = r'"(?:[^"\\]|\\.)*"'
# What a cut-off object may end with that no closing bracket can fix: tried in order, first fit wins.
_DANGLING = (
    re.compile(r"(?!)"),
    re.compile(r"[,:]\s*$"),
    re.compile(rf"(?<=[,{{])\s*{_KEY}\s*:?\s*$"),
    re.compile(rf"(?<=[,{{])\s*{_KEY}\s*:\s*[^,{{}}\[\]\"]*$"),
)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # json.loads turns 1e999 into inf, which json.dumps would then write as the invalid `Infinity`.
        raise ValueError(text)
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(text)


def loads(text: str) -> Any:
    """Decode strict JSON; :data:`FAIL` when the text is not JSON or holds a non-finite number."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return FAIL


def dumps(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text readable."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:
        # A lone surrogate cannot travel as UTF-8; the escaped form is still the same JSON value.
        return json.dumps(value, separators=(",", ":"))
    return text


def close_tag(name: str, *, after_cdata: bool = False) -> re.Pattern[str]:
    """The closing tag of ``name``, with any prefix, case and a little whitespace."""
    lead = r"(?<=\]\]>)\s{0,40}" if after_cdata else ""
    return re.compile(rf"{lead}<\s{{0,8}}/\s{{0,8}}{NS}{re.escape(name)}\s{{0,8}}>", re.I)


def unescape_attr(text: str) -> str:
    return _ENTITY.sub(lambda m: _ENTITIES[m.group()], text)


def _closers(text: str) -> tuple[bool, list[str]] | None:
    """Whether the text ends inside a string, and the brackets still open, outermost first."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and (not stack or stack.pop() != char):
            return None
    return in_string, stack


def repair_json(text: str) -> Any:
    """Best effort at JSON cut off mid-way: close the open string and brackets, drop a dangling tail."""
    text = text.strip()
    value = loads(text)
    if value is not FAIL or not text:
        return value
    state = _closers(text)
    if state is None:
        return FAIL
    in_string, stack = state
    if in_string:
        text = text.removesuffix("\\") + '"'
    closing = "".join(reversed(stack))
    for tail in _DANGLING:
        candidate = tail.sub("", text).rstrip().removesuffix(",")
        value = loads(candidate + closing)
        if value is not FAIL:
            return value
    return FAIL


def tool_schemas(tools: Iterable[FunctionTool]) -> dict[str, JsonObject]:
    """Each tool's parameter schema, decoded; a missing or unreadable schema becomes ``{}``."""
    schemas: dict[str, JsonObject] = {}
    for tool in tools:
        schema = FAIL if tool.parameters is UNSET else loads(bytes(tool.parameters).decode("utf-8", "replace"))
        schemas[tool.name] = schema if isinstance(schema, dict) else {}
    return schemas


def property_types(schema: Mapping[str, Any] | None, name: str) -> frozenset[str]:
    """The JSON types a schema allows for one property; empty when it does not say."""
    if not schema:
        return frozenset()
    properties = schema.get("properties")
    prop = properties.get(name) if isinstance(properties, dict) else None
    if not isinstance(prop, dict):
        return frozenset()
    return json_types(prop)


def json_types(prop: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types one (sub)schema allows; empty when it does not say."""
    declared = prop.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(t for t in declared if isinstance(t, str))
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return frozenset({"string"})
    for key in ("anyOf", "oneOf"):
        options = prop.get(key)
        if isinstance(options, list):
            return frozenset().union(*(json_types(o) for o in options if isinstance(o, dict)))
    return frozenset()


def _trim_newlines(raw: str) -> str:
    """Drop the one line break that separates a value from its tags, at either end."""
    lead = 2 if raw.startswith("\r\n") else 1 if raw.startswith("\n") else 0
    raw = raw[lead:]
    if raw.endswith("\r\n") and lead != 1:
        return raw[:-2]
    return raw.removesuffix("\n")


def _unwrap_cdata(value: str) -> str:
    stripped = value.strip()
    if stripped.startswith(_CDATA_OPEN) and stripped.endswith(_CDATA_CLOSE) and len(stripped) >= 12:
        return stripped[len(_CDATA_OPEN) : -len(_CDATA_CLOSE)]
    return value


def coerce_scalar(text: str, types: frozenset[str]) -> Any:
    """A number, boolean or null written as text, read as the first of ``types`` it fits; else FAIL."""
    if len(text) > 400:
        # Python refuses to convert integers with thousands of digits; nothing sane is that long.
        return FAIL
    if "integer" in types and _INT.fullmatch(text):
        return int(text)
    if "integer" in types and _NUMBER.fullmatch(text) and float(text).is_integer():
        return int(float(text))
    if "number" in types and _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return int(number) if _INT.fullmatch(text) else number
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "null" in types and text.lower() in ("null", "none", ""):
        return None
    return FAIL


def decode_parameter(raw: str, types: frozenset[str] = frozenset()) -> Any:
    """Read one ``<parameter>`` body as the model wrote it.

    A string-typed parameter is kept verbatim; anything else is read as JSON when it is JSON, then coerced
    to the declared scalar type, and otherwise kept as the string it is.
    """
    value = _unwrap_cdata(_trim_newlines(raw))
    if "string" in types and not (types - {"string", "null"}):
        return value
    text = value.strip()
    parsed = loads(text)
    if parsed is not FAIL and not ("string" in types and isinstance(parsed, str)):
        return parsed
    if types:
        coerced = coerce_scalar(text, types)
        if coerced is not FAIL:
            return coerced
    return value
