"""Hypothesis strategies for request bodies: any JSON, and bodies shaped like real requests but wrong.

A shaped body has the fields of a real Chat or Responses request, each either a valid value or junk (any
JSON value, a huge or negative number, odd unicode, deep nesting), and any of them may be missing. Bodies
are encoded as clients may send them: ASCII JSON with escapes, or raw UTF-8 which lone surrogates make
invalid.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

__all__ = ("any_body", "chat_bodies", "response_bodies")

_DEEP = re.compile(r'"<deep:(\d+)>"')
"""A placeholder for nesting deeper than the json module's encoder recurses; :func:`_encode` expands it."""

_ODD = ["", "\x00", "\ud800", "a\udfffb", "\u202e", "\ufeff", "\U0001f4a5", "e\u0301", "\U0010ffff", '\\"', "\r\n"]
odd_text = st.sampled_from(_ODD) | st.text(st.characters(exclude_categories=()), max_size=12)
"""Any code points: lone surrogates, NUL, direction marks, astral and combining characters."""
text = st.one_of(st.text(max_size=12), odd_text)
integers = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-1, 0, 2**63, -(2**63) - 1, 2**64, 10**40]))
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, -0.0]))
numbers = integers | floats
deep = st.sampled_from([2, 40, 600, 950, 1000, 3000]).map(lambda levels: f"<deep:{levels}>")
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text | deep,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)
junk = st.one_of(st.none(), st.booleans(), numbers, text, deep, json_values)
"""What a wrong field holds: any JSON value, scalars and deep nesting more often than not."""


def _one_in(n: int, rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from([False] * (n - 1) + [True]).flatmap(lambda is_rare: rare if is_rare else usual)


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``, one time in eight junk."""
    return _one_in(8, junk, valid)


def _object(fields: dict[str, st.SearchStrategy[Any]], *, required: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """An object with ``fields``, each maybe missing; the ``required`` ones are more often there."""
    needed = {name: strategy for name, strategy in fields.items() if name in required}
    optional = {name: strategy for name, strategy in fields.items() if name not in required}
    return _one_in(4, st.fixed_dictionaries({}, optional=fields), st.fixed_dictionaries(needed, optional=optional))


def _encode(value: Any, ascii_only: bool) -> bytes:
    encoded = json.dumps(value, ensure_ascii=ascii_only)
    encoded = _DEEP.sub(lambda match: "[" * int(match[1]) + "]" * int(match[1]), encoded)
    return encoded.encode("utf-8", "surrogatepass")


def _bodies(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.builds(_encode, values, st.booleans())


_tool_call = _object(
    {
        "id": _field(text),
        "type": _field(st.just("function")),
        "function": _field(_object({"name": _field(text), "arguments": _field(text)}, required=("name", "arguments"))),
    },
    required=("id", "function"),
)
_chat_part = _object(
    {
        "type": _field(st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "other"])),
        "text": _field(text),
        "refusal": _field(text),
        "image_url": _field(_object({"url": _field(text), "detail": _field(text)}, required=("url",))),
        "input_audio": junk,
        "file": junk,
    },
    required=("type",),
)
_chat_content = _field(st.one_of(text, st.lists(_chat_part, max_size=3)))


def _role(role: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _object(fields, required=tuple(fields)).map(lambda rest: {"role": role, **rest})


_chat_message = st.one_of(
    _role("system", content=_chat_content),
    _role("developer", content=_chat_content),
    _role("user", content=_chat_content),
    _object(
        {
            "content": _field(st.none()) | _chat_content,
            "tool_calls": _field(st.lists(_tool_call, max_size=2)),
            "refusal": _field(st.none() | text),
        },
    ).map(lambda rest: {"role": "assistant", **rest}),
    _role("tool", tool_call_id=_field(text), content=_chat_content),
    _role("function", name=_field(text), content=_field(st.none() | text)),
    _object(
        {
            "role": _field(st.sampled_from(["system", "user", "assistant", "tool", "function", "robot"])),
            "content": _field(st.none()) | _chat_content,
            "name": _field(text),
            "tool_call_id": _field(text),
        }
    ),
)
_chat_tool = _object(
    {
        "type": _field(st.sampled_from(["function", "custom"])),
        "function": _field(
            _object(
                {
                    "name": _field(text),
                    "description": _field(text),
                    "parameters": junk,
                    "strict": _field(st.none() | st.booleans()),
                },
                required=("name",),
            )
        ),
        "custom": junk,
    },
    required=("type", "function"),
)
_chat_tool_choice = _field(
    st.one_of(
        st.sampled_from(["none", "auto", "required", "any"]),
        _object(
            {
                "type": _field(st.sampled_from(["function", "allowed_tools", "custom"])),
                "function": _field(_object({"name": _field(text)}, required=("name",))),
                "allowed_tools": junk | _object({"mode": _field(st.sampled_from(["auto", "required"])), "tools": junk}),
                "custom": junk,
            },
            required=("type",),
        ),
    )
)
_optional_int = _field(st.none() | integers)
_optional_float = _field(st.none() | floats)
chat_bodies = _bodies(
    _object(
        {
            "model": _field(st.sampled_from(["mock-1", "gpt-4o"])),
            "messages": _field(st.lists(_chat_message, min_size=1, max_size=3)),
            "stream": _field(st.none() | st.booleans()),
            "stream_options": _field(_object({"include_usage": _field(st.booleans())})),
            "temperature": _optional_float,
            "top_p": _optional_float,
            "max_tokens": _optional_int,
            "max_completion_tokens": _optional_int,
            "n": _field(st.none() | st.integers(-2, 3)),
            "stop": _field(st.none() | text | st.lists(text, max_size=20)),
            "seed": _optional_int,
            "presence_penalty": _optional_float,
            "frequency_penalty": _optional_float,
            "response_format": junk,
            "reasoning_effort": _field(st.none() | text),
            "parallel_tool_calls": _field(st.none() | st.booleans()),
            "user": _field(st.none() | text),
            "tools": _field(st.none() | st.lists(_chat_tool, max_size=3)),
            "tool_choice": _chat_tool_choice,
        },
        required=("model", "messages"),
    )
)

_response_part = _object(
    {
        "type": _field(
            st.sampled_from(["input_text", "output_text", "text", "refusal", "input_image", "input_file", "x"])
        ),
        "text": _field(text),
        "refusal": _field(text),
        "image_url": _field(st.none() | text),
        "file_id": _field(st.none() | text),
        "detail": _field(st.none() | text),
    },
    required=("type",),
)
_response_item = _object(
    {
        "type": _field(
            st.sampled_from(["message", "function_call", "function_call_output", "item_reference", "reasoning"])
        ),
        "role": _field(st.sampled_from(["user", "assistant", "system", "developer", "tool"])),
        "content": _field(text | st.lists(_response_part, max_size=3)),
        "id": _field(st.none() | text),
        "call_id": _field(text),
        "name": _field(text),
        "arguments": _field(text),
        "output": _field(text | st.lists(_response_part, max_size=2)),
    },
    required=("type",),
)
_response_tool = _object(
    {
        "type": _field(st.sampled_from(["function", "custom", "web_search"])),
        "name": _field(text),
        "description": _field(st.none() | text),
        "parameters": junk,
        "strict": _field(st.none() | st.booleans()),
    },
    required=("type", "name"),
)
_text_config = _object(
    {
        "format": _field(
            st.none()
            | _object(
                {
                    "type": _field(st.sampled_from(["text", "json_object", "json_schema", "yaml"])),
                    "name": _field(st.none() | text),
                    "schema": junk,
                    "strict": _field(st.none() | st.booleans()),
                    "description": _field(st.none() | text),
                },
                required=("type",),
            )
        ),
        "verbosity": _field(st.none() | text),
    }
)
response_bodies = _bodies(
    _object(
        {
            "model": _field(st.sampled_from(["mock-1", "gpt-4o"])),
            "input": _field(st.text(min_size=1, max_size=12) | st.lists(_response_item, min_size=1, max_size=4)),
            "instructions": _field(st.none() | text),
            "tools": _field(st.none() | st.lists(_response_tool, max_size=3)),
            "tool_choice": _field(
                st.sampled_from(["none", "auto", "required", "any"])
                | _object(
                    {
                        "type": _field(st.sampled_from(["function", "allowed_tools", "web_search"])),
                        "name": _field(st.none() | text),
                        "mode": _field(st.none() | text),
                    },
                    required=("type",),
                )
            ),
            "parallel_tool_calls": _field(st.none() | st.booleans()),
            "previous_response_id": _field(st.none() | text),
            "store": _field(st.none() | st.booleans()),
            "background": _field(st.none() | st.booleans()),
            "stream": _field(st.none() | st.booleans()),
            "max_output_tokens": _optional_int,
            "temperature": _optional_float,
            "top_p": _optional_float,
            "text": _field(_text_config),
            "reasoning": _field(_object({"effort": _field(st.none() | text), "summary": _field(st.none() | text)})),
            "metadata": _field(st.none() | st.dictionaries(text, text, max_size=3)),
            "user": _field(st.none() | text),
            "truncation": _field(st.none() | st.sampled_from(["auto", "disabled"])),
            "service_tier": _field(st.none() | text),
        },
        required=("model", "input"),
    )
)

any_body = st.one_of(st.binary(max_size=64), _bodies(json_values))
"""Bytes and JSON values of every kind, objects or not."""
