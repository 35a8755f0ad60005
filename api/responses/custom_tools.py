"""Responses custom (freeform) tools, carried through the gateway as function tools.

Codex offers ``apply_patch`` as ``{"type": "custom", "format": {"type": "grammar", ...}}``: the model's
call is free text, not JSON. Few backends have such tools, and every backend (and the text bridge) has
function tools, so a custom tool travels as a function with one string parameter, ``input``, whose
description carries the grammar. The call comes back as a ``custom_tool_call`` with that string. The
mapping lives in this module alone, on the API side: workers and providers only see function tools.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from shared import openai_responses as wire
from shared.generation import FunctionTool

__all__ = ("INPUT_SCHEMA", "arguments_for", "as_function", "custom_names", "input_from")


class _Arguments(msgspec.Struct, forbid_unknown_fields=True):
    input: str


INPUT_SCHEMA = msgspec.Raw(
    b'{"type":"object","properties":{"input":{"type":"string","description":"The tool\'s whole input, as free '
    b'text in the format the tool description gives."}},"required":["input"],"additionalProperties":false}'
)
_arguments_encoder = msgspec.json.Encoder()
_arguments_decoder = msgspec.json.Decoder(_Arguments)


def as_function(spec: wire.CustomToolSpec) -> FunctionTool:
    """The function tool a backend is offered in place of ``spec``."""
    parts = [spec.description] if spec.description else []
    grammar = spec.format.grammar_text() if spec.format else None
    if grammar is not None:
        syntax, definition = grammar
        parts.append(f"The input must match this {syntax} grammar:\n{definition}")
    return FunctionTool(spec.name, "\n\n".join(parts) or None, INPUT_SCHEMA, strict=None)


def arguments_for(text: str) -> str:
    """A custom call's input as the function arguments a backend sees in the conversation history."""
    return _arguments_encoder.encode(_Arguments(text)).decode()


def input_from(arguments: str) -> str:
    """The free-text input of a call the backend made as a function call.

    A model that did not wrap its input as asked still gets its call through, with the text it wrote.
    """
    try:
        return _arguments_decoder.decode(arguments).input
    except (msgspec.ValidationError, msgspec.DecodeError):
        return arguments


def custom_names(tools: Iterable[msgspec.Raw]) -> frozenset[str]:
    """The names of the custom tools among a request's ``tools`` (unreadable entries are skipped)."""
    names = []
    for raw in tools:
        try:
            spec = wire.decode_tool(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        if isinstance(spec, wire.CustomToolSpec):
            names.append(spec.name)
    return frozenset(names)
