"""Anthropic Messages request → the one :class:`~shared.generation.GenerationRequest`.

A user turn's ``tool_result`` blocks become ``tool`` messages ahead of the rest of the turn, each checked
against the ``tool_use`` ids of the assistant turn before it; ids are kept as the client sent them, so
``toolu_…`` ids come back unchanged. Thinking blocks and ``cache_control`` marks ride along for backends
that use them. Every refusal is a 400 naming the field, in the path syntax of the message body.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import msgspec
from msgspec import UNSET

from api.intake.decoding import decode_body
from api.intake.schemas import check_schema
from api.messages import wire
from shared.errors import InvalidRequest
from shared.generation import (
    ClientInfo,
    ContentPart,
    FunctionTool,
    GenerationRequest,
    ImagePart,
    Message,
    Sampling,
    TextPart,
    Thinking,
    ToolCall,
    ToolChoice,
)

__all__ = (
    "CountTokensRequestBody",
    "MessagesRequestBody",
    "decode_count_tokens",
    "decode_messages_request",
    "prompt_characters",
    "to_generation",
)

_REFUSED: dict[str, object] = {"model": {"minLength": 1}, "messages": {"minItems": 1}}
MessagesRequestBody = Annotated[
    wire.MessagesBody,
    msgspec.Meta(extra_json_schema={"properties": {**_REFUSED, "max_tokens": {"minimum": 1}}}),
]
"""The body as the OpenAPI document describes it: the wire type, and what this module refuses of it."""
CountTokensRequestBody = Annotated[wire.CountTokensBody, msgspec.Meta(extra_json_schema={"properties": _REFUSED})]

_messages_decoder = msgspec.json.Decoder(wire.MessagesBody)
_count_decoder = msgspec.json.Decoder(wire.CountTokensBody)
_MAX_TOKENS = 2**31 - 1
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _check(body: wire.CountTokensBody) -> None:
    if not body.model:
        raise InvalidRequest("model: must not be empty.", param="model")
    if not body.messages:
        raise InvalidRequest("messages: at least one message is required.", param="messages")


def decode_messages_request(data: bytes) -> wire.MessagesBody:
    body = decode_body(_messages_decoder, data)
    _check(body)
    if not 1 <= body.max_tokens <= _MAX_TOKENS:
        raise InvalidRequest(f"max_tokens: must be between 1 and {_MAX_TOKENS}.", param="max_tokens")
    return body


def decode_count_tokens(data: bytes) -> wire.CountTokensBody:
    body = decode_body(_count_decoder, data)
    _check(body)
    return body


def _image(block: wire.ImageBlock, where: str) -> ImagePart:
    source = block.source
    if isinstance(source, wire.UrlSource):
        return ImagePart(source.url)
    if source.media_type not in _IMAGE_TYPES:
        raise InvalidRequest(
            f"{where}.source.media_type: must be one of {', '.join(sorted(_IMAGE_TYPES))}.",
            param=f"{where}.source.media_type",
        )
    try:
        base64.b64decode(source.data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}.source.data: the image data is not valid base64.", param=where) from None
    return ImagePart(f"data:{source.media_type};base64,{source.data}")


def _document(block: wire.DocumentBlock, where: str) -> TextPart:
    if not isinstance(block.source, wire.TextSource):
        raise InvalidRequest(f"{where}.source: only plain-text documents are supported.", param=f"{where}.source.type")
    text = f"{block.title}\n\n{block.source.data}" if block.title else block.source.data
    return TextPart(text, block.cache_control)


def _part(block: wire.TextBlock | wire.ImageBlock | wire.DocumentBlock, where: str) -> ContentPart:
    if isinstance(block, wire.TextBlock):
        return TextPart(block.text, block.cache_control)
    if isinstance(block, wire.ImageBlock):
        return _image(block, where)
    return _document(block, where)


def _tool_result(block: wire.ToolResultBlock, where: str, offered: set[str]) -> Message:
    if block.tool_use_id not in offered:
        raise InvalidRequest(
            f"{where}.tool_use_id: unexpected tool_use_id '{block.tool_use_id}' in tool_result blocks: each "
            "tool_result must answer a tool_use block of the previous message.",
            param=f"{where}.tool_use_id",
        )
    if isinstance(block.content, str):
        parts: list[ContentPart] = [TextPart(block.content)] if block.content else []
    else:
        parts = [_part(item, f"{where}.content[{i}]") for i, item in enumerate(block.content)]
    return Message("tool", parts, tool_call_id=block.tool_use_id, is_error=block.is_error)


def _user(content: list[wire.ContentBlock], where: str, offered: set[str]) -> list[Message]:
    results: list[Message] = []
    parts: list[ContentPart] = []
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        if isinstance(block, wire.ToolResultBlock):
            results.append(_tool_result(block, at, offered))
        elif isinstance(block, wire.TextBlock | wire.ImageBlock | wire.DocumentBlock):
            parts.append(_part(block, at))
        else:
            raise InvalidRequest(
                f"{at}.type: a '{block.__struct_config__.tag}' block may only appear in an assistant message.",
                param=f"{at}.type",
            )
    return results + ([Message("user", parts)] if parts else [])


def _assistant(content: list[wire.ContentBlock], where: str) -> Message:
    message = Message("assistant")
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        if isinstance(block, wire.TextBlock):
            message.content.append(TextPart(block.text, block.cache_control))
        elif isinstance(block, wire.ToolUseBlock):
            _object(block.input, f"{at}.input")
            message.tool_calls.append(ToolCall(block.id, block.name, bytes(block.input).decode()))
        elif isinstance(block, wire.ThinkingBlock):
            message.thinking.append(Thinking(block.thinking, block.signature))
        elif isinstance(block, wire.RedactedThinkingBlock):
            message.thinking.append(Thinking(redacted=block.data))
        else:
            raise InvalidRequest(
                f"{at}.type: a '{block.__struct_config__.tag}' block may only appear in a user message.",
                param=f"{at}.type",
            )
    return message


def _object(raw: msgspec.Raw, where: str) -> None:
    try:
        _object_decoder.decode(raw)
    except msgspec.DecodeError:
        raise InvalidRequest(f"{where}: must be a JSON object.", param=where) from None


def _conversation(body: wire.CountTokensBody) -> list[Message]:
    out: list[Message] = []
    if isinstance(body.system, str):
        out.append(Message("system", [TextPart(body.system)]))
    elif body.system:
        out.append(Message("system", [TextPart(b.text, b.cache_control) for b in body.system]))
    offered: set[str] = set()
    for index, message in enumerate(body.messages):
        where = f"messages[{index}]"
        content = message.content
        blocks: list[wire.ContentBlock] = [wire.TextBlock(content)] if isinstance(content, str) else content
        if message.role == "assistant":
            turn = _assistant(blocks, where)
            offered = {call.id for call in turn.tool_calls}
            out.append(turn)
        else:
            out.extend(_user(blocks, where, offered))
            offered = set()
    return out


def _tools(tools: list[wire.ToolParam] | None) -> list[FunctionTool]:
    """The client's own tools; server tools (web search and the like) are not offered to the model."""
    out: list[FunctionTool] = []
    for index, tool in enumerate(tools or ()):
        if tool.type not in (None, "custom"):
            continue
        if tool.input_schema is UNSET:
            raise InvalidRequest(f"tools[{index}].input_schema: Field required.", param=f"tools[{index}].input_schema")
        _object(tool.input_schema, f"tools[{index}].input_schema")
        check_schema(tool.input_schema, f"tools[{index}].input_schema")
        out.append(FunctionTool(tool.name, tool.description, tool.input_schema))
    return out


def _tool_choice(choice: wire.ToolChoice | None, tools: list[FunctionTool]) -> ToolChoice | None:
    if choice is None or isinstance(choice, wire.AutoChoice):
        return None if choice is None else ToolChoice("auto")
    if isinstance(choice, wire.AnyChoice):
        return ToolChoice("required")
    if isinstance(choice, wire.NoChoice):
        return ToolChoice("none")
    if choice.name not in {tool.name for tool in tools}:
        raise InvalidRequest(f"tool_choice.name: no tool named '{choice.name}' in tools.", param="tool_choice.name")
    return ToolChoice("function", choice.name)


def _thinking_budget(body: wire.CountTokensBody) -> int | None:
    thinking = body.thinking
    if thinking is None or thinking.type == "disabled":
        return None
    if thinking.budget_tokens is None or thinking.budget_tokens < 1024:
        raise InvalidRequest("thinking.budget_tokens: must be at least 1024.", param="thinking.budget_tokens")
    return thinking.budget_tokens


def to_generation(
    body: wire.MessagesBody, *, generation_id: str, request_id: str, reply_to: str, created: int, client: ClientInfo
) -> GenerationRequest:
    tools = _tools(body.tools)
    choice = body.tool_choice
    sampling = Sampling(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        max_output_tokens=body.max_tokens,
        stop=list(body.stop_sequences or ()),
        thinking_budget=_thinking_budget(body),
        parallel_tool_calls=False if choice is not None and choice.disable_parallel_tool_use else None,
        user=body.metadata.user_id if body.metadata else None,
    )
    return GenerationRequest(
        id=generation_id,
        request_id=request_id,
        model=body.model,
        messages=_conversation(body),
        reply_to=reply_to,
        created=created,
        tools=tools,
        tool_choice=_tool_choice(choice, tools),
        sampling=sampling,
        client=client,
    )


def prompt_characters(body: wire.CountTokensBody) -> int:
    """How much text the prompt holds, for ``count_tokens``' estimate: messages, tools and their schemas."""
    _thinking_budget(body)
    messages = _conversation(body)
    text = sum(len(m.text()) + sum(len(c.name) + len(c.arguments) for c in m.tool_calls) for m in messages)
    tools = _tools(body.tools)
    return text + sum(len(t.name) + len(t.description or "") + len(t.parameters or b"") for t in tools)
