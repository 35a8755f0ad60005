"""OpenAI Responses API request shapes (``POST /v1/responses``).

Clients send far more than the spec's input types admit: Codex sends assistant history without ids,
reasoning items, custom tools and fields newer than any SDK. So the request decodes leniently: ``input``
items and ``tools`` arrive as :class:`msgspec.Raw` and are decoded one by one by their ``type``, unknown
types are skipped, and unknown top-level fields are ignored. JSON-valued options that are only echoed
back (``text``, ``reasoning``, ``tool_choice``) stay encoded.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from shared.openai_chat import TokenLimit

__all__ = (
    "ContentPart",
    "CreateResponse",
    "CustomToolCallItem",
    "CustomToolCallOutputItem",
    "CustomToolFormat",
    "CustomToolSpec",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionToolSpec",
    "InputFile",
    "InputImage",
    "InputItem",
    "InputText",
    "ItemReference",
    "MessageItem",
    "NamedFunctionChoice",
    "OutputTextPart",
    "ReasoningConfig",
    "RefusalPart",
    "TextConfig",
    "TextFormat",
    "decode_content",
    "decode_input_item",
    "decode_tool",
)


class InputText(msgspec.Struct):
    text: str


class OutputTextPart(msgspec.Struct):
    text: str


class RefusalPart(msgspec.Struct):
    refusal: str


class InputImage(msgspec.Struct):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct):
    file_id: str | None = None
    filename: str | None = None


ContentPart = InputText | OutputTextPart | RefusalPart | InputImage | InputFile


class MessageItem(msgspec.Struct, kw_only=True):
    """A message; ``type`` may be omitted ("easy" input messages)."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[msgspec.Raw]
    id: str | None = None


class FunctionCallItem(msgspec.Struct, kw_only=True):
    call_id: str
    name: str
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(msgspec.Struct, kw_only=True):
    call_id: str
    output: str | list[msgspec.Raw]
    id: str | None = None


class CustomToolCallItem(msgspec.Struct, kw_only=True):
    call_id: str
    name: str
    input: str
    id: str | None = None


class CustomToolCallOutputItem(FunctionCallOutputItem, kw_only=True):
    """The same shape as a function call's output, for a custom tool's call."""


class ItemReference(msgspec.Struct, kw_only=True):
    id: str


InputItem = (
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | ItemReference
)


class _Kind(msgspec.Struct):
    type: str | None = None
    role: str | None = None


_kind_decoder = msgspec.json.Decoder(_Kind)

_ITEM_DECODERS: dict[str, msgspec.json.Decoder[InputItem]] = {
    "message": msgspec.json.Decoder(MessageItem),
    "function_call": msgspec.json.Decoder(FunctionCallItem),
    "function_call_output": msgspec.json.Decoder(FunctionCallOutputItem),
    "custom_tool_call": msgspec.json.Decoder(CustomToolCallItem),
    "custom_tool_call_output": msgspec.json.Decoder(CustomToolCallOutputItem),
    "item_reference": msgspec.json.Decoder(ItemReference),
}

_PART_DECODERS: dict[str, msgspec.json.Decoder[ContentPart]] = {
    "input_text": msgspec.json.Decoder(InputText),
    "output_text": msgspec.json.Decoder(OutputTextPart),
    "text": msgspec.json.Decoder(InputText),  # Chat's spelling, which some clients send here too
    "refusal": msgspec.json.Decoder(RefusalPart),
    "input_image": msgspec.json.Decoder(InputImage),
    "input_file": msgspec.json.Decoder(InputFile),
}


def decode_input_item(raw: msgspec.Raw) -> InputItem | None:
    """Decode one ``input`` item; ``None`` for item types the gateway does not use (e.g. ``reasoning``).

    Raises :class:`msgspec.ValidationError` when a known item type is malformed.
    """
    kind = _kind_decoder.decode(raw)
    item_type = kind.type or ("message" if kind.role else "item_reference")
    decoder = _ITEM_DECODERS.get(item_type)
    return None if decoder is None else decoder.decode(raw)


def decode_content(raw: msgspec.Raw) -> ContentPart | None:
    """Decode one content part; ``None`` for part types the gateway does not use."""
    decoder = _PART_DECODERS.get(_kind_decoder.decode(raw).type or "")
    if decoder is None:
        return None
    return decoder.decode(raw)


class FunctionToolSpec(msgspec.Struct, kw_only=True):
    """A Responses function tool: flat, unlike Chat's ``{"function": {...}}``."""

    name: str
    description: str | None = None
    parameters: msgspec.Raw | UnsetType = UNSET
    strict: bool | None = None


class _Grammar(msgspec.Struct, kw_only=True):
    syntax: str = "lark"
    definition: str = ""


class CustomToolFormat(msgspec.Struct, kw_only=True):
    """``{"type": "text"}`` or a grammar, flat (the Responses spelling) or nested under ``grammar`` (Chat's)."""

    type: str = "text"
    syntax: str | None = None
    definition: str | None = None
    grammar: _Grammar | None = None

    def grammar_text(self) -> tuple[str, str] | None:
        """The grammar's syntax and definition, if the input is constrained by one."""
        if self.type != "grammar":
            return None
        nested = self.grammar or _Grammar()
        definition = self.definition or nested.definition
        return (self.syntax or nested.syntax, definition) if definition else None


class CustomToolSpec(msgspec.Struct, kw_only=True):
    """A freeform tool: the model's call is text (optionally matching a grammar), not JSON arguments."""

    name: str
    description: str | None = None
    format: CustomToolFormat | None = None


_TOOL_DECODERS: dict[str, msgspec.json.Decoder[FunctionToolSpec | CustomToolSpec]] = {
    "function": msgspec.json.Decoder(FunctionToolSpec),
    "custom": msgspec.json.Decoder(CustomToolSpec),
}


def decode_tool(raw: msgspec.Raw) -> FunctionToolSpec | CustomToolSpec | None:
    """Decode a function or custom tool; ``None`` for hosted tools, which no backend here can run."""
    decoder = _TOOL_DECODERS.get(_kind_decoder.decode(raw).type or "")
    return None if decoder is None else decoder.decode(raw)


class NamedFunctionChoice(msgspec.Struct):
    type: str
    name: str | None = None
    mode: str | None = None
    """Set for ``{"type": "allowed_tools", "mode": ...}``."""


class TextFormat(msgspec.Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: msgspec.Raw | UnsetType = UNSET
    strict: bool | None = None
    description: str | None = None


class ReasoningConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class TextConfig(msgspec.Struct, kw_only=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class CreateResponse(msgspec.Struct, kw_only=True):
    model: str = ""
    input: str | list[msgspec.Raw] = ""
    instructions: str | None = None
    tools: list[msgspec.Raw] | None = None
    tool_choice: msgspec.Raw | UnsetType = UNSET
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    max_output_tokens: TokenLimit | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: msgspec.Raw | UnsetType = UNSET
    reasoning: msgspec.Raw | UnsetType = UNSET
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: str | None = None
    service_tier: str | None = None
    conversation: msgspec.Raw | UnsetType = UNSET
    prompt: msgspec.Raw | UnsetType = UNSET
    n: msgspec.Raw | UnsetType = UNSET
    """Not a Responses parameter; read only to be refused, as OpenAI does, rather than ignored."""
