"""OpenAI Chat Completions request shapes.

The API decodes client requests with these; the OpenAI-compatible provider encodes upstream requests
with them. Fields a client may leave out default to ``UNSET`` and are then left out on encoding, so the
upstream sees its own defaults. Unknown fields are ignored (real clients send many vendor extensions).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = (
    "AllowedToolsChoice",
    "AssistantMessage",
    "ChatCompletionRequest",
    "ChatContentPart",
    "ChatMessage",
    "ChatTool",
    "ChatToolCall",
    "ChatToolChoice",
    "CustomTool",
    "CustomToolChoice",
    "DeveloperMessage",
    "FileContent",
    "FunctionCallSpec",
    "FunctionDefinition",
    "FunctionMessage",
    "FunctionTool",
    "ImageContent",
    "ImageURL",
    "InputAudioContent",
    "NamedToolChoice",
    "NamedToolChoiceFunction",
    "RefusalContent",
    "StreamOptions",
    "SystemMessage",
    "TextContent",
    "TokenLimit",
    "ToolMessage",
    "UserMessage",
)


class TextContent(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ImageURL(msgspec.Struct):
    url: str
    detail: str | UnsetType = UNSET


class ImageContent(msgspec.Struct, tag_field="type", tag="image_url"):
    image_url: ImageURL


class InputAudioContent(msgspec.Struct, tag_field="type", tag="input_audio"):
    input_audio: msgspec.Raw


class FileContent(msgspec.Struct, tag_field="type", tag="file"):
    file: msgspec.Raw


class RefusalContent(msgspec.Struct, tag_field="type", tag="refusal"):
    refusal: str


ChatContentPart = TextContent | ImageContent | InputAudioContent | FileContent | RefusalContent


class FunctionCallSpec(msgspec.Struct):
    name: str
    arguments: str


class ChatToolCall(msgspec.Struct):
    id: str
    function: FunctionCallSpec
    type: Literal["function"] = "function"


class SystemMessage(msgspec.Struct, tag_field="role", tag="system"):
    content: str | list[ChatContentPart]
    name: str | UnsetType = UNSET


class DeveloperMessage(msgspec.Struct, tag_field="role", tag="developer"):
    content: str | list[ChatContentPart]
    name: str | UnsetType = UNSET


class UserMessage(msgspec.Struct, tag_field="role", tag="user"):
    content: str | list[ChatContentPart]
    name: str | UnsetType = UNSET


class AssistantMessage(msgspec.Struct, tag_field="role", tag="assistant"):
    content: str | list[ChatContentPart] | None = None
    tool_calls: list[ChatToolCall] | UnsetType = UNSET
    name: str | UnsetType = UNSET
    refusal: str | UnsetType | None = UNSET


class ToolMessage(msgspec.Struct, tag_field="role", tag="tool"):
    tool_call_id: str
    content: str | list[ChatContentPart]


class FunctionMessage(msgspec.Struct, tag_field="role", tag="function"):
    """Deprecated by OpenAI but still sent by old clients."""

    name: str
    content: str | None = None


ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage


class FunctionDefinition(msgspec.Struct):
    name: str
    description: str | UnsetType = UNSET
    parameters: msgspec.Raw | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET


class FunctionTool(msgspec.Struct, tag_field="type", tag="function"):
    function: FunctionDefinition


class CustomTool(msgspec.Struct, tag_field="type", tag="custom"):
    custom: msgspec.Raw


ChatTool = FunctionTool | CustomTool


class NamedToolChoiceFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct, tag_field="type", tag="function"):
    function: NamedToolChoiceFunction


class AllowedToolsChoice(msgspec.Struct, tag_field="type", tag="allowed_tools"):
    allowed_tools: msgspec.Raw


class CustomToolChoice(msgspec.Struct, tag_field="type", tag="custom"):
    custom: msgspec.Raw


ChatToolChoice = Literal["none", "auto", "required"] | NamedToolChoice | AllowedToolsChoice | CustomToolChoice


class StreamOptions(msgspec.Struct):
    include_usage: bool | UnsetType = UNSET


TokenLimit = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
"""A bound on output tokens: positive, and small enough for every upstream and our own int64 fields."""


class ChatCompletionRequest(msgspec.Struct):
    model: str
    messages: list[ChatMessage]
    stream: bool | UnsetType | None = UNSET
    stream_options: StreamOptions | UnsetType | None = UNSET
    temperature: float | UnsetType | None = UNSET
    top_p: float | UnsetType | None = UNSET
    max_tokens: TokenLimit | UnsetType | None = UNSET
    max_completion_tokens: TokenLimit | UnsetType | None = UNSET
    n: int | UnsetType | None = UNSET
    stop: str | list[str] | UnsetType | None = UNSET
    seed: int | UnsetType | None = UNSET
    presence_penalty: float | UnsetType | None = UNSET
    frequency_penalty: float | UnsetType | None = UNSET
    response_format: msgspec.Raw | UnsetType = UNSET
    reasoning_effort: str | UnsetType | None = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET
    user: str | UnsetType | None = UNSET
    tools: list[ChatTool] | UnsetType | None = UNSET
    tool_choice: ChatToolChoice | UnsetType | None = UNSET
