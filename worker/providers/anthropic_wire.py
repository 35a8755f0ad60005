"""Anthropic Messages API wire payloads: the streamed request, its server-sent events, its error body.

Only what the gateway sends or reads is modelled; unknown fields in replies are ignored, so new upstream
fields do not break decoding.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from shared.generation import CacheControl

__all__ = (
    "STREAM_EVENTS",
    "AnyToolChoice",
    "AutoToolChoice",
    "Base64Source",
    "BlockDelta",
    "BlockStart",
    "ContentBlock",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "ErrorBody",
    "ErrorDetail",
    "ErrorEvent",
    "ImageBlock",
    "MessageDelta",
    "MessageDeltaBody",
    "MessageParam",
    "MessageStart",
    "MessageStartBody",
    "MessageStop",
    "MessagesRequest",
    "Metadata",
    "NamedToolChoice",
    "NoToolChoice",
    "RedactedThinkingBlock",
    "StreamEvent",
    "StreamUsage",
    "TextBlock",
    "ThinkingBlock",
    "ThinkingParam",
    "ToolChoiceParam",
    "ToolParam",
    "ToolResultBlock",
    "ToolUseBlock",
    "UrlSource",
)


class _Tagged(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


# --- request -------------------------------------------------------------------------------------------


class Base64Source(_Tagged, tag="base64"):
    media_type: str
    data: str


class UrlSource(_Tagged, tag="url"):
    url: str


class TextBlock(_Tagged, tag="text"):
    text: str
    cache_control: CacheControl | UnsetType = UNSET


class ImageBlock(_Tagged, tag="image"):
    source: Base64Source | UrlSource


class ToolUseBlock(_Tagged, tag="tool_use"):
    id: str
    name: str
    input: msgspec.Raw
    """A JSON object, kept encoded as the model produced it."""


class ToolResultBlock(_Tagged, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] = ""
    """Left out when empty: the API rejects empty text."""
    is_error: bool = False


class ThinkingBlock(_Tagged, tag="thinking"):
    thinking: str
    signature: str


class RedactedThinkingBlock(_Tagged, tag="redacted_thinking"):
    data: str


ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class MessageParam(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class ToolParam(msgspec.Struct, omit_defaults=True):
    name: str
    input_schema: msgspec.Raw
    description: str | UnsetType = UNSET


class AutoToolChoice(_Tagged, tag="auto"):
    disable_parallel_tool_use: bool | UnsetType = UNSET


class AnyToolChoice(_Tagged, tag="any"):
    disable_parallel_tool_use: bool | UnsetType = UNSET


class NamedToolChoice(_Tagged, tag="tool"):
    name: str
    disable_parallel_tool_use: bool | UnsetType = UNSET


class NoToolChoice(_Tagged, tag="none"):
    pass


ToolChoiceParam = AutoToolChoice | AnyToolChoice | NamedToolChoice | NoToolChoice


class Metadata(msgspec.Struct):
    user_id: str


class ThinkingParam(_Tagged, tag="enabled"):
    budget_tokens: int


class MessagesRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[MessageParam]
    max_tokens: int
    stream: Literal[True]
    """Always streamed; a field without a default, so ``omit_defaults`` still sends it."""
    system: str | list[TextBlock] | UnsetType = UNSET
    """A list of blocks only when one carries a ``cache_control`` breakpoint."""
    tools: list[ToolParam] | UnsetType = UNSET
    tool_choice: ToolChoiceParam | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    top_k: int | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    thinking: ThinkingParam | UnsetType = UNSET


# --- stream --------------------------------------------------------------------------------------------


class StreamUsage(msgspec.Struct):
    """Token counts; ``message_delta`` repeats only the ones that changed, the rest are ``None``."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class MessageStartBody(msgspec.Struct):
    usage: StreamUsage = msgspec.field(default_factory=StreamUsage)


class MessageStart(_Tagged, tag="message_start"):
    message: MessageStartBody


class BlockStart(msgspec.Struct):
    """A content block as it opens: ``text``, ``tool_use``, ``thinking`` or a server tool's block."""

    type: str
    id: str = ""
    name: str = ""
    text: str = ""
    thinking: str = ""
    data: str = ""
    """A ``redacted_thinking`` block's encrypted content."""


class ContentBlockStart(_Tagged, tag="content_block_start"):
    index: int
    content_block: BlockStart


class BlockDelta(msgspec.Struct):
    """``text_delta``, ``input_json_delta``, ``thinking_delta``, …; untagged so new kinds still decode."""

    type: str
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""


class ContentBlockDelta(_Tagged, tag="content_block_delta"):
    index: int
    delta: BlockDelta


class ContentBlockStop(_Tagged, tag="content_block_stop"):
    index: int


class MessageDeltaBody(msgspec.Struct):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDelta(_Tagged, tag="message_delta"):
    delta: MessageDeltaBody = msgspec.field(default_factory=MessageDeltaBody)
    usage: StreamUsage | None = None


class MessageStop(_Tagged, tag="message_stop"):
    pass


class ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class ErrorEvent(_Tagged, tag="error"):
    error: ErrorDetail = msgspec.field(default_factory=ErrorDetail)


StreamEvent = (
    MessageStart | ContentBlockStart | ContentBlockDelta | ContentBlockStop | MessageDelta | MessageStop | ErrorEvent
)

STREAM_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    }
)
"""The SSE event names decoded; others (``ping``, kinds added later) are skipped as the API asks."""


class ErrorBody(msgspec.Struct):
    """``{"type": "error", "error": {"type": …, "message": …}}``, the body of every failed request."""

    error: ErrorDetail = msgspec.field(default_factory=ErrorDetail)
