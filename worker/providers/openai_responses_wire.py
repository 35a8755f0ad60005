"""The OpenAI Responses API as the Responses provider speaks it: the request it sends and the replies it reads.

The request is built from a :class:`GenerationRequest` alone. Options the Responses API has no field for
are dropped: ``stop`` sequences, ``seed``, ``presence_penalty`` and ``frequency_penalty``; the upstream
would reject the request rather than ignore them.

Replies are read leniently: an upstream sends many event and item types the gateway has no use for
(reasoning, hosted tools), so each stream event is first read for its ``type`` only and then decoded by
the shape of the few types that matter, and output items are decoded one by one by their ``type``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from shared.errors import InvalidRequest
from shared.generation import GenerationRequest, ImagePart, Message, TextPart, ToolChoice
from shared.openai_responses import FunctionCallItem, MessageItem, decode_input_item

__all__ = (
    "ArgumentsDeltaEvent",
    "ArgumentsDoneEvent",
    "ErrorEvent",
    "EventKind",
    "ItemEvent",
    "ResponseBody",
    "ResponseError",
    "ResponseEvent",
    "ResponsesRequest",
    "TextDeltaEvent",
    "TextDoneEvent",
    "UsageBody",
    "build_request",
    "decode_output_item",
)

_T = TypeVar("_T")


# --- the request -------------------------------------------------------------------------------------


class InputText(msgspec.Struct, tag_field="type", tag="input_text"):
    text: str


class InputImage(msgspec.Struct, tag_field="type", tag="input_image"):
    image_url: str
    detail: str = "auto"


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    """Assistant text in the history; ``annotations`` is required by stricter Responses implementations."""

    text: str
    annotations: list[msgspec.Raw] = msgspec.field(default_factory=list)


class InputMessage(msgspec.Struct, tag_field="type", tag="message"):
    role: Literal["user", "assistant"]
    content: list[InputText | InputImage | OutputText]


class FunctionCallInput(msgspec.Struct, tag_field="type", tag="function_call"):
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputInput(msgspec.Struct, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str


InputItem = InputMessage | FunctionCallInput | FunctionCallOutputInput


class FunctionToolParam(msgspec.Struct, tag_field="type", tag="function"):
    name: str
    parameters: msgspec.Raw
    strict: bool
    description: str | UnsetType = UNSET


class NamedFunction(msgspec.Struct, tag_field="type", tag="function"):
    name: str


ToolChoiceParam = Literal["none", "auto", "required"] | NamedFunction


class ReasoningParam(msgspec.Struct):
    effort: str


class JsonSchemaFormat(msgspec.Struct, tag_field="type", tag="json_schema"):
    name: str
    schema: msgspec.Raw | UnsetType = UNSET
    strict: bool | UnsetType = UNSET
    description: str | UnsetType = UNSET


class JsonObjectFormat(msgspec.Struct, tag_field="type", tag="json_object"):
    pass


class TextParam(msgspec.Struct):
    format: JsonSchemaFormat | JsonObjectFormat


class ResponsesRequest(msgspec.Struct):
    model: str
    input: list[InputItem]
    stream: Literal[True] = True
    store: Literal[False] = False
    """The gateway stores responses itself; the upstream keeps nothing."""
    instructions: str | UnsetType = UNSET
    tools: list[FunctionToolParam] | UnsetType = UNSET
    tool_choice: ToolChoiceParam | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    max_output_tokens: int | UnsetType = UNSET
    reasoning: ReasoningParam | UnsetType = UNSET
    text: TextParam | UnsetType = UNSET
    user: str | UnsetType = UNSET


class _ChatJsonSchema(msgspec.Struct):
    name: str = "response"
    schema: msgspec.Raw | UnsetType = UNSET
    strict: bool | None = None
    description: str | None = None


class _ChatResponseFormat(msgspec.Struct):
    type: str
    json_schema: _ChatJsonSchema | None = None


_response_format_decoder = msgspec.json.Decoder(_ChatResponseFormat)
_EMPTY_PARAMETERS = msgspec.Raw(b'{"type":"object","properties":{}}')


def _unset_none(value: _T | None) -> _T | UnsetType:
    return UNSET if value is None else value


def _items(message: Message) -> list[InputItem]:
    if message.role == "tool":
        return [FunctionCallOutputInput(message.tool_call_id or "", message.text())]
    if message.role == "assistant":
        text = message.text()
        spoken: list[InputItem] = [InputMessage("assistant", [OutputText(text)])] if text else []
        return spoken + [FunctionCallInput(call.id, call.name, call.arguments) for call in message.tool_calls]
    content: list[InputText | InputImage | OutputText] = [
        InputText(part.text) if isinstance(part, TextPart) else InputImage(part.url, part.detail or "auto")
        for part in message.content
        if isinstance(part, TextPart | ImagePart)
    ]
    return [InputMessage("user", content)]


def _tool_choice(choice: ToolChoice | None) -> ToolChoiceParam | UnsetType:
    if choice is None:
        return UNSET
    if choice.mode == "function":
        return NamedFunction(choice.name or "")
    return choice.mode


def _text_format(response_format: msgspec.Raw | UnsetType) -> TextParam | UnsetType:
    """Chat's ``response_format`` nests the JSON schema; the Responses API flattens it under ``text.format``."""
    if response_format is UNSET:
        return UNSET
    try:
        chat = _response_format_decoder.decode(response_format)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Invalid response_format: {exc}", param="response_format") from exc
    if chat.type == "text":
        return UNSET
    if chat.type == "json_object":
        return TextParam(JsonObjectFormat())
    if chat.type == "json_schema" and chat.json_schema is not None:
        spec = chat.json_schema
        return TextParam(
            JsonSchemaFormat(spec.name, spec.schema, _unset_none(spec.strict), _unset_none(spec.description))
        )
    raise InvalidRequest(f"Unsupported response_format type '{chat.type}'.", param="response_format")


def build_request(request: GenerationRequest, model: str) -> ResponsesRequest:
    """The upstream request; system messages become ``instructions``, the rest ``input`` items in order.

    A tool whose strictness the client left open is sent as ``strict: false``: the Responses API would
    otherwise coerce its schema into strict mode, unlike Chat Completions, where most clients come from.
    """
    sampling = request.sampling
    instructions = "\n\n".join(m.text() for m in request.messages if m.role == "system")
    tools = [
        FunctionToolParam(
            tool.name,
            _EMPTY_PARAMETERS if tool.parameters is UNSET else tool.parameters,
            bool(tool.strict),
            _unset_none(tool.description),
        )
        for tool in request.tools
    ]
    return ResponsesRequest(
        model=model,
        input=[item for message in request.messages if message.role != "system" for item in _items(message)],
        instructions=instructions or UNSET,
        tools=tools or UNSET,
        tool_choice=_tool_choice(request.tool_choice) if tools else UNSET,
        parallel_tool_calls=_unset_none(sampling.parallel_tool_calls) if tools else UNSET,
        temperature=_unset_none(sampling.temperature),
        top_p=_unset_none(sampling.top_p),
        max_output_tokens=_unset_none(sampling.max_output_tokens),
        reasoning=UNSET if sampling.reasoning_effort is None else ReasoningParam(sampling.reasoning_effort),
        text=_text_format(sampling.response_format),
        user=_unset_none(sampling.user),
    )


# --- the replies ---------------------------------------------------------------------------------------


class EventKind(msgspec.Struct):
    type: str = ""


class _InputDetails(msgspec.Struct):
    cached_tokens: int | None = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int | None = 0


class UsageBody(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class ResponseError(msgspec.Struct):
    code: str | int | None = None
    message: str = ""


class _IncompleteDetails(msgspec.Struct):
    reason: str | None = None


class ResponseBody(msgspec.Struct):
    """A Response object: the whole reply when not streamed, and the payload of the terminal events."""

    status: str | None = None
    output: list[msgspec.Raw] = msgspec.field(default_factory=list)
    usage: UsageBody | None = None
    error: ResponseError | None = None
    incomplete_details: _IncompleteDetails | None = None


class ResponseEvent(msgspec.Struct):
    """``response.completed``, ``response.incomplete`` and ``response.failed``."""

    response: ResponseBody


class ItemEvent(msgspec.Struct):
    """``response.output_item.added`` and ``response.output_item.done``."""

    item: msgspec.Raw
    output_index: int = 0


class TextDeltaEvent(msgspec.Struct):
    """``response.output_text.delta`` and ``response.refusal.delta``."""

    delta: str = ""
    output_index: int = 0
    content_index: int = 0


class TextDoneEvent(msgspec.Struct):
    """``response.output_text.done`` (``text``) and ``response.refusal.done`` (``refusal``)."""

    text: str = ""
    refusal: str = ""
    output_index: int = 0
    content_index: int = 0


class ArgumentsDeltaEvent(msgspec.Struct):
    delta: str = ""
    item_id: str | None = None
    output_index: int = 0


class ArgumentsDoneEvent(msgspec.Struct):
    arguments: str = ""
    item_id: str | None = None
    output_index: int = 0


class ErrorEvent(msgspec.Struct):
    """The ``error`` event, flat as the spec has it or with the fields nested under ``error``."""

    code: str | int | None = None
    message: str | None = None
    error: ResponseError | None = None


def decode_output_item(raw: msgspec.Raw) -> MessageItem | FunctionCallItem | None:
    """An output item the gateway uses (message or function call); ``None`` for any other type."""
    item = decode_input_item(raw)
    return item if isinstance(item, MessageItem | FunctionCallItem) else None
