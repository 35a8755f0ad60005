"""Responses API request → the one :class:`~shared.generation.GenerationRequest`, and back to history.

A provider never learns which API the client used: Responses ``input`` items become the same
:class:`~shared.generation.Message` list Chat produces (``function_call`` items join the assistant
message before them as tool calls, ``function_call_output`` items become tool messages), and a stored
response's output becomes history the same way when a later request continues from it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET

from api.intake.decoding import decode_body
from api.intake.schemas import check_schema
from api.responses import custom_tools
from api.responses.objects import (
    CustomToolCallOutput,
    CustomToolCallResult,
    FunctionCallOutput,
    FunctionCallResult,
    InputImageContent,
    InputItemView,
    InputMessage,
    InputTextContent,
    MessageOutput,
    OutputItem,
    OutputText,
    ResponseShell,
)
from shared import openai_responses as wire
from shared.errors import InvalidRequest
from shared.generation import ContentPart, FunctionTool, ImagePart, Message, Sampling, TextPart, ToolCall, ToolChoice

__all__ = (
    "CreateResponseBody",
    "ParsedInput",
    "decode_create_response",
    "history_from_output",
    "parse_input",
    "sampling",
    "shell",
    "tools",
)

_decoder = msgspec.json.Decoder(wire.CreateResponse)
_encoder = msgspec.json.Encoder()
_choice_decoder = msgspec.json.Decoder(str | wire.NamedFunctionChoice)
_text_decoder = msgspec.json.Decoder(wire.TextConfig)
_reasoning_decoder = msgspec.json.Decoder(wire.ReasoningConfig)

CreateResponseBody = Annotated[
    wire.CreateResponse,
    msgspec.Meta(
        extra_json_schema={
            "required": ["model"],
            "properties": {
                "model": {"minLength": 1},
                # An item without a type or role is a reference to an item by its id.
                "input": {
                    "items": {"type": "object", "anyOf": [{"required": [key]} for key in ("type", "role", "id")]}
                },
                "tools": {"items": {"type": "object"}},
                "conversation": False,
                "prompt": False,
            },
            "anyOf": [
                {"required": ["input"], "properties": {"input": {"minLength": 1, "minItems": 1}}},
                {
                    "required": ["previous_response_id"],
                    "properties": {"previous_response_id": {"type": "string", "minLength": 1}},
                },
            ],
            "not": {
                "required": ["background", "store"],
                "properties": {"background": {"const": True}, "store": {"const": False}},
            },
        }
    ),
]
"""The body as the OpenAPI document describes it: the wire type, and what this module refuses of it."""


def decode_create_response(body: bytes) -> wire.CreateResponse:
    request = decode_body(_decoder, body)
    if not request.model:
        raise InvalidRequest("'model' is required.", param="model")
    if not request.input and not request.previous_response_id:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if request.background and request.store is False:
        raise InvalidRequest("Background responses must be stored; 'store' cannot be false.", param="store")
    if request.conversation is not UNSET:
        raise InvalidRequest("The Conversations API is not supported; use previous_response_id.", param="conversation")
    if request.prompt is not UNSET:
        raise InvalidRequest("Stored prompt templates are not supported.", param="prompt")
    if request.n is not UNSET:
        raise InvalidRequest("Unknown parameter: 'n'.", param="n", code="unknown_parameter")
    return request


class ParsedInput(msgspec.Struct):
    messages: list[Message]
    """The input as conversation messages (without ``instructions``)."""
    items: list[InputItemView]
    """The input as ``input_items`` lists it, each with an id."""


def parse_input(value: str | list[msgspec.Raw], *, id_prefix: str) -> ParsedInput:
    """Translate ``input``; ids are assigned to items that came without one (Codex sends none)."""
    if isinstance(value, str):
        return ParsedInput([Message("user", [TextPart(value)])], [_user_text(f"{id_prefix}000", value)])
    messages: list[Message] = []
    items: list[InputItemView] = []
    for index, raw in enumerate(value):
        where = f"input[{index}]"
        try:
            item = wire.decode_input_item(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidRequest(f"Invalid input item: {exc}", param=where) from exc
        item_id = getattr(item, "id", None) or f"{id_prefix}{index:03d}"
        if isinstance(item, wire.MessageItem):
            parts = _parts(item.content, where)
            messages.append(Message("system" if item.role == "developer" else item.role, parts))
            items.append(InputMessage(id=item_id, role=item.role, content=[_view(part, item.role) for part in parts]))
        elif isinstance(item, wire.FunctionCallItem):
            _append_call(messages, ToolCall(item.call_id, item.name, item.arguments))
            items.append(
                FunctionCallOutput(
                    id=item_id, call_id=item.call_id, name=item.name, arguments=item.arguments, status="completed"
                )
            )
        elif isinstance(item, wire.CustomToolCallItem):
            _append_call(messages, ToolCall(item.call_id, item.name, custom_tools.arguments_for(item.input)))
            items.append(
                CustomToolCallOutput(
                    id=item_id, call_id=item.call_id, name=item.name, input=item.input, status="completed"
                )
            )
        elif isinstance(item, wire.FunctionCallOutputItem):
            parts = _parts(item.output, where)
            messages.append(Message("tool", parts, tool_call_id=item.call_id))
            text = item.output if isinstance(item.output, str) else "".join(_text_of(parts))
            result = CustomToolCallResult if isinstance(item, wire.CustomToolCallOutputItem) else FunctionCallResult
            items.append(result(id=item_id, call_id=item.call_id, output=text))
        elif isinstance(item, wire.ItemReference):
            raise InvalidRequest("item_reference inputs are not supported; send the item itself.", param=where)
    return ParsedInput(messages, items)


def _user_text(item_id: str, text: str) -> InputMessage:
    return InputMessage(id=item_id, role="user", content=[InputTextContent(text)])


def _text_of(parts: list[ContentPart]) -> list[str]:
    return [part.text for part in parts if isinstance(part, TextPart)]


def _view(part: ContentPart, role: str) -> InputTextContent | InputImageContent | OutputText:
    if isinstance(part, ImagePart):
        return InputImageContent(part.url, part.detail or "auto")
    return OutputText(part.text) if role == "assistant" else InputTextContent(part.text)


def _parts(content: str | list[msgspec.Raw], where: str) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[ContentPart] = []
    for index, raw in enumerate(content):
        try:
            part = wire.decode_content(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidRequest(f"Invalid content part: {exc}", param=f"{where}.content[{index}]") from exc
        if isinstance(part, wire.InputText | wire.OutputTextPart):
            parts.append(TextPart(part.text))
        elif isinstance(part, wire.RefusalPart):
            parts.append(TextPart(part.refusal))
        elif isinstance(part, wire.InputImage):
            if not part.image_url:
                raise InvalidRequest("Images must be sent as image_url (file ids are not supported).", param=where)
            parts.append(ImagePart(part.image_url, part.detail))
        elif isinstance(part, wire.InputFile):
            raise InvalidRequest("input_file content is not supported.", param=where)
    return parts


def tools(request: wire.CreateResponse) -> list[FunctionTool]:
    """The function and custom tools (see :mod:`api.responses.custom_tools`); hosted tools are skipped, as no
    backend here can run them."""
    out: list[FunctionTool] = []
    for index, raw in enumerate(request.tools or ()):
        try:
            spec = wire.decode_tool(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidRequest(f"Invalid tool: {exc}", param=f"tools[{index}]") from exc
        if isinstance(spec, wire.CustomToolSpec):
            out.append(custom_tools.as_function(spec))
        elif spec is not None:
            check_schema(spec.parameters, f"tools[{index}].parameters")
            out.append(FunctionTool(spec.name, spec.description, spec.parameters, spec.strict))
    return out


def tool_choice(request: wire.CreateResponse, available: list[FunctionTool]) -> ToolChoice | None:
    if request.tool_choice is UNSET:
        return None
    try:
        choice = _choice_decoder.decode(request.tool_choice)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"Invalid tool_choice: {exc}", param="tool_choice") from exc
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(f"Unknown tool_choice '{choice}'.", param="tool_choice")
        return ToolChoice(choice)  # type: ignore[arg-type]
    if choice.type in ("function", "custom"):
        if choice.name not in {tool.name for tool in available}:
            raise InvalidRequest(f"tool_choice names unknown tool '{choice.name}'.", param="tool_choice")
        return ToolChoice("function", choice.name)
    if choice.type == "allowed_tools":
        return ToolChoice("required" if choice.mode == "required" else "auto")
    return ToolChoice("auto")


class _ChatJsonSchema(msgspec.Struct, omit_defaults=True):
    name: str
    schema: msgspec.Raw | msgspec.UnsetType = UNSET
    strict: bool | None = None
    description: str | None = None


class _ChatResponseFormat(msgspec.Struct, omit_defaults=True):
    type: str
    json_schema: _ChatJsonSchema | None = None


def _response_format(request: wire.CreateResponse) -> msgspec.Raw | msgspec.UnsetType:
    # Responses nests the format under "text" and flattens json_schema; Chat's response_format does not.
    if request.text is UNSET:
        return UNSET
    try:
        fmt = _text_decoder.decode(request.text).format
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"Invalid text.format: {exc}", param="text.format") from exc
    if fmt is None or fmt.type == "text":
        return UNSET
    if fmt.type == "json_object":
        return msgspec.Raw(_encoder.encode(_ChatResponseFormat("json_object")))
    check_schema(fmt.schema, "text.format.schema")
    schema = _ChatJsonSchema(fmt.name or "response", fmt.schema, fmt.strict, fmt.description)
    return msgspec.Raw(_encoder.encode(_ChatResponseFormat("json_schema", schema)))


def _reasoning_effort(request: wire.CreateResponse) -> str | None:
    if request.reasoning is UNSET:
        return None
    try:
        return _reasoning_decoder.decode(request.reasoning).effort
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"Invalid reasoning: {exc}", param="reasoning") from exc


def sampling(request: wire.CreateResponse) -> Sampling:
    return Sampling(
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_output_tokens,
        response_format=_response_format(request),
        reasoning_effort=_reasoning_effort(request),
        parallel_tool_calls=request.parallel_tool_calls,
        user=request.user,
    )


def shell(
    request: wire.CreateResponse, *, response_id: str, created_at: int, choice: ToolChoice | None
) -> ResponseShell:
    """The fields echoed on every copy of the response, normalised the way OpenAI echoes them."""
    echoed = ResponseShell(
        id=response_id,
        created_at=created_at,
        model=request.model,
        background=bool(request.background),
        store=request.store is not False,
        instructions=request.instructions,
        max_output_tokens=request.max_output_tokens,
        parallel_tool_calls=request.parallel_tool_calls is not False,
        previous_response_id=request.previous_response_id,
        user=request.user,
        metadata=request.metadata or {},
    )
    if request.temperature is not None:
        echoed.temperature = request.temperature
    if request.top_p is not None:
        echoed.top_p = request.top_p
    if request.text is not UNSET:
        echoed.text = request.text
    if request.reasoning is not UNSET:
        echoed.reasoning = request.reasoning
    if request.tools:
        echoed.tools = msgspec.Raw(b"[" + b",".join(request.tools) + b"]")
    if choice is not None and request.tool_choice is not UNSET:
        echoed.tool_choice = request.tool_choice
    if request.truncation:
        echoed.truncation = request.truncation
    return echoed


def history_from_output(output: list[OutputItem]) -> list[Message]:
    """A finished response's output as conversation history for the request that continues it."""
    messages: list[Message] = []
    for item in output:
        if isinstance(item, MessageOutput):
            messages.append(Message("assistant", [TextPart("".join(part.text for part in item.content))]))
        elif isinstance(item, CustomToolCallOutput):
            _append_call(messages, ToolCall(item.call_id, item.name, custom_tools.arguments_for(item.input)))
        else:
            _append_call(messages, ToolCall(item.call_id, item.name, item.arguments))
    return messages


def _append_call(messages: list[Message], call: ToolCall) -> None:
    """Chat carries a turn's tool calls on the assistant message that precedes them."""
    if messages and messages[-1].role == "assistant":
        messages[-1].tool_calls.append(call)
    else:
        messages.append(Message("assistant", tool_calls=[call]))
