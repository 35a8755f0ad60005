"""Chat Completions request → the one :class:`~shared.generation.GenerationRequest`."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET

from api.intake.decoding import decode_body
from api.intake.schemas import check_schema
from shared import openai_chat as wire
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
    ToolCall,
    ToolChoice,
)

__all__ = ("ChatRequestBody", "decode_chat_request", "to_generation")

_decoder = msgspec.json.Decoder(wire.ChatCompletionRequest)

_SUPPORTED_CONTENT = {
    "anyOf": [
        {"type": ["string", "null"]},
        {"type": "array", "items": {"properties": {"type": {"enum": ["text", "image_url", "refusal"]}}}},
    ]
}
ChatRequestBody = Annotated[
    wire.ChatCompletionRequest,
    msgspec.Meta(
        extra_json_schema={
            "required": ["model", "messages"],
            "properties": {
                "model": {"minLength": 1},
                "messages": {"minItems": 1, "items": {"properties": {"content": _SUPPORTED_CONTENT}}},
                "n": {"enum": [1, None]},
                "tools": {"items": {"properties": {"type": {"const": "function"}}}},
            },
        }
    ),
]
"""The body as the OpenAPI document describes it: the wire type, and what this module refuses of it."""


class _JsonSchemaFormat(msgspec.Struct):
    name: str
    schema: msgspec.Raw | msgspec.UnsetType = UNSET


class _ResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchemaFormat | None = None


_response_format_decoder = msgspec.json.Decoder(_ResponseFormat)


def _check_response_format(raw: msgspec.Raw | msgspec.UnsetType) -> None:
    """``response_format`` travels on as it came; here it is only checked, as OpenAI would."""
    if raw is UNSET:
        return
    try:
        response_format = _response_format_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"Invalid response_format: {exc}", param="response_format") from exc
    if response_format.type != "json_schema":
        return
    if response_format.json_schema is None:
        raise InvalidRequest("response_format of type json_schema needs 'json_schema'.", param="response_format")
    check_schema(response_format.json_schema.schema, "response_format.json_schema.schema")


class _AllowedTools(msgspec.Struct):
    mode: str = "auto"


_allowed_tools_decoder = msgspec.json.Decoder(_AllowedTools)


def decode_chat_request(body: bytes) -> wire.ChatCompletionRequest:
    request = decode_body(_decoder, body)
    if not request.model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    if not request.messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    if request.n not in (UNSET, None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    _check_response_format(request.response_format)
    return request


def _parts(content: str | list[wire.ChatContentPart] | None, where: str) -> list[ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[ContentPart] = []
    for part in content:
        if isinstance(part, wire.TextContent):
            parts.append(TextPart(part.text))
        elif isinstance(part, wire.ImageContent):
            detail = None if part.image_url.detail is UNSET else part.image_url.detail
            parts.append(ImagePart(part.image_url.url, detail))
        elif isinstance(part, wire.RefusalContent):
            parts.append(TextPart(part.refusal))
        else:
            raise InvalidRequest(f"Content of type '{type(part).__name__}' is not supported.", param=where)
    return parts


def _message(message: wire.ChatMessage, index: int) -> Message:
    where = f"messages[{index}].content"
    if isinstance(message, wire.SystemMessage | wire.DeveloperMessage):
        return Message("system", _parts(message.content, where))
    if isinstance(message, wire.UserMessage):
        return Message("user", _parts(message.content, where))
    if isinstance(message, wire.AssistantMessage):
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()]
        return Message("assistant", _parts(message.content, where), tool_calls=calls)
    if isinstance(message, wire.ToolMessage):
        return Message("tool", _parts(message.content, where), tool_call_id=message.tool_call_id)
    return Message("tool", _parts(message.content, where), name=message.name)


def _tools(tools: list[wire.ChatTool] | None) -> list[FunctionTool]:
    out: list[FunctionTool] = []
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, wire.FunctionTool):
            raise InvalidRequest("Only function tools are supported.", param=f"tools[{index}].type")
        f = tool.function
        check_schema(f.parameters, f"tools[{index}].function.parameters")
        out.append(
            FunctionTool(
                f.name,
                None if f.description is UNSET else f.description,
                f.parameters,
                None if f.strict is UNSET else f.strict,
            )
        )
    return out


def _tool_choice(choice: wire.ChatToolChoice | None, tools: list[FunctionTool]) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(choice)
    if isinstance(choice, wire.NamedToolChoice):
        if choice.function.name not in {tool.name for tool in tools}:
            raise InvalidRequest(f"tool_choice names unknown function '{choice.function.name}'.", param="tool_choice")
        return ToolChoice("function", choice.function.name)
    if isinstance(choice, wire.AllowedToolsChoice):
        try:
            mode = _allowed_tools_decoder.decode(choice.allowed_tools).mode
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"Invalid tool_choice.allowed_tools: {exc}", param="tool_choice") from exc
        return ToolChoice("required" if mode == "required" else "auto")
    raise InvalidRequest("Custom tool choices are not supported.", param="tool_choice")


def to_generation(
    request: wire.ChatCompletionRequest,
    *,
    generation_id: str,
    request_id: str,
    reply_to: str,
    created: int,
    client: ClientInfo,
) -> GenerationRequest:
    tools = _tools(None if request.tools is UNSET else request.tools)
    stop = request.stop if request.stop is not UNSET else None
    max_tokens = request.max_completion_tokens
    if max_tokens in (UNSET, None):
        max_tokens = request.max_tokens
    sampling = Sampling(
        temperature=None if request.temperature is UNSET else request.temperature,
        top_p=None if request.top_p is UNSET else request.top_p,
        max_output_tokens=None if max_tokens is UNSET else max_tokens,
        stop=[stop] if isinstance(stop, str) else list(stop or ()),
        seed=None if request.seed is UNSET else request.seed,
        presence_penalty=None if request.presence_penalty is UNSET else request.presence_penalty,
        frequency_penalty=None if request.frequency_penalty is UNSET else request.frequency_penalty,
        response_format=request.response_format,
        reasoning_effort=None if request.reasoning_effort is UNSET else request.reasoning_effort,
        parallel_tool_calls=None if request.parallel_tool_calls is UNSET else request.parallel_tool_calls,
        user=None if request.user is UNSET else request.user,
    )
    return GenerationRequest(
        id=generation_id,
        request_id=request_id,
        model=request.model,
        messages=[_message(message, index) for index, message in enumerate(request.messages)],
        reply_to=reply_to,
        created=created,
        tools=tools,
        tool_choice=_tool_choice(None if request.tool_choice is UNSET else request.tool_choice, tools),
        sampling=sampling,
        client=client,
    )
