"""The Anthropic Messages API as clients send it: request bodies, decoded with msgspec.

Unknown fields are ignored, as Anthropic adds them often and clients (Claude Code) send new ones first;
an unknown content block ``type`` is refused, since its meaning would be lost. JSON the gateway passes on
without reading (a tool's ``input``, its ``input_schema``) stays :class:`msgspec.Raw`.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from shared.generation import CacheControl

__all__ = (
    "AnyChoice",
    "AutoChoice",
    "Base64Source",
    "ContentBlock",
    "CountTokensBody",
    "DocumentBlock",
    "ImageBlock",
    "MessageParam",
    "MessagesBody",
    "Metadata",
    "NamedChoice",
    "NoChoice",
    "RedactedThinkingBlock",
    "TextBlock",
    "TextSource",
    "ThinkingBlock",
    "ThinkingConfig",
    "ToolChoice",
    "ToolParam",
    "ToolResultBlock",
    "ToolUseBlock",
    "UrlSource",
)


class _Block(msgspec.Struct, tag_field="type", kw_only=True):
    cache_control: CacheControl | None = None


class Base64Source(msgspec.Struct, tag_field="type", tag="base64"):
    media_type: str
    data: str


class UrlSource(msgspec.Struct, tag_field="type", tag="url"):
    url: str


class TextBlock(_Block, tag="text"):
    text: str


class ImageBlock(_Block, tag="image"):
    source: Base64Source | UrlSource


class TextSource(msgspec.Struct, tag_field="type", tag="text"):
    data: str
    media_type: str = "text/plain"


class DocumentBlock(_Block, tag="document"):
    """Only plain-text documents: other sources are refused with a 400 naming the field."""

    source: TextSource | Base64Source | UrlSource
    title: str | None = None


class ToolUseBlock(_Block, tag="tool_use"):
    id: str
    name: str
    input: msgspec.Raw


class ToolResultBlock(_Block, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] = ""
    is_error: bool = False


class ThinkingBlock(_Block, tag="thinking"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(_Block, tag="redacted_thinking"):
    data: str


ContentBlock = (
    TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
)


class MessageParam(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolParam(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    input_schema: msgspec.Raw | UnsetType = UNSET
    type: str | None = None
    """``custom`` or absent for a client tool; a server tool (``web_search_…``) names its kind here."""
    cache_control: CacheControl | None = None


class _Choice(msgspec.Struct, tag_field="type", kw_only=True):
    disable_parallel_tool_use: bool = False


class AutoChoice(_Choice, tag="auto"):
    pass


class AnyChoice(_Choice, tag="any"):
    pass


class NamedChoice(_Choice, tag="tool"):
    name: str


class NoChoice(_Choice, tag="none"):
    pass


ToolChoice = AutoChoice | AnyChoice | NamedChoice | NoChoice


class ThinkingConfig(msgspec.Struct):
    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = None


class Metadata(msgspec.Struct):
    user_id: str | None = None


class CountTokensBody(msgspec.Struct, kw_only=True):
    """``POST /v1/messages/count_tokens``: a message request without ``max_tokens``."""

    model: str
    messages: list[MessageParam]
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesBody(CountTokensBody, kw_only=True):
    """``POST /v1/messages``."""

    max_tokens: int
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: Metadata | None = None
