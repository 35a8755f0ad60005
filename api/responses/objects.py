"""Responses API output shapes: the Response object, its output items, and the streaming events.

Shapes follow OpenAI's wire (see the project's wire reference §3.4 to 3.5): explicit ``null`` for the
nullable fields, ``logprobs: []`` on text events, ``cache_write_tokens`` in usage (strict SDK 3.x
requires it), and ``type`` first on every event, which also names the SSE ``event:`` line.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = (
    "ContentPartAdded",
    "ContentPartDone",
    "CustomToolCallInputDelta",
    "CustomToolCallInputDone",
    "CustomToolCallOutput",
    "CustomToolCallResult",
    "DeletedResponse",
    "ErrorEvent",
    "FunctionCallArgumentsDelta",
    "FunctionCallArgumentsDone",
    "FunctionCallOutput",
    "FunctionCallResult",
    "IncompleteDetails",
    "InputImageContent",
    "InputItemList",
    "InputItemView",
    "InputMessage",
    "InputTextContent",
    "InputTokensDetails",
    "MessageOutput",
    "OutputItem",
    "OutputItemAdded",
    "OutputItemDone",
    "OutputText",
    "OutputTextDelta",
    "OutputTextDone",
    "OutputTokensDetails",
    "ResponseCompleted",
    "ResponseCreated",
    "ResponseError",
    "ResponseFailed",
    "ResponseInProgress",
    "ResponseIncomplete",
    "ResponseObject",
    "ResponseShell",
    "ResponseStatus",
    "ResponseUsage",
    "StreamError",
    "StreamEvent",
    "encode_sse",
)

ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "incomplete", "cancelled"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


def _raw(text: bytes) -> msgspec.Raw:
    return msgspec.Raw(text)


class ResponseShell(msgspec.Struct, kw_only=True):
    """What is fixed when a response is created and echoed back on every copy of it."""

    id: str
    created_at: int
    model: str
    background: bool = False
    store: bool = True
    instructions: str | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: msgspec.Raw = msgspec.field(default_factory=lambda: _raw(b'{"effort":null,"summary":null}'))
    service_tier: str = "default"
    temperature: float = 1.0
    text: msgspec.Raw = msgspec.field(default_factory=lambda: _raw(b'{"format":{"type":"text"}}'))
    tool_choice: msgspec.Raw = msgspec.field(default_factory=lambda: _raw(b'"auto"'))
    tools: msgspec.Raw = msgspec.field(default_factory=lambda: _raw(b"[]"))
    top_p: float = 1.0
    truncation: str = "disabled"
    user: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str
    annotations: list[msgspec.Raw] = msgspec.field(default_factory=list)
    logprobs: list[msgspec.Raw] = msgspec.field(default_factory=list)


class MessageOutput(msgspec.Struct, tag_field="type", tag="message", kw_only=True):
    id: str
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[OutputText] = msgspec.field(default_factory=list)


class FunctionCallOutput(msgspec.Struct, tag_field="type", tag="function_call", kw_only=True):
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


class CustomToolCallOutput(msgspec.Struct, tag_field="type", tag="custom_tool_call", kw_only=True):
    id: str
    call_id: str
    name: str
    input: str
    status: ItemStatus


OutputItem = MessageOutput | FunctionCallOutput | CustomToolCallOutput


class InputTextContent(msgspec.Struct, tag_field="type", tag="input_text"):
    text: str


class InputImageContent(msgspec.Struct, tag_field="type", tag="input_image"):
    image_url: str
    detail: str = "auto"


class InputMessage(msgspec.Struct, tag_field="type", tag="message", kw_only=True):
    id: str
    role: str
    status: ItemStatus = "completed"
    content: list[InputTextContent | InputImageContent | OutputText]


class FunctionCallResult(msgspec.Struct, tag_field="type", tag="function_call_output", kw_only=True):
    id: str
    call_id: str
    output: str
    status: ItemStatus = "completed"


class CustomToolCallResult(msgspec.Struct, tag_field="type", tag="custom_tool_call_output", kw_only=True):
    id: str
    call_id: str
    output: str
    status: ItemStatus = "completed"


InputItemView = InputMessage | FunctionCallOutput | FunctionCallResult | CustomToolCallOutput | CustomToolCallResult
"""An input item as ``GET /v1/responses/{id}/input_items`` lists it: always with an id."""


class InputItemList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[InputItemView]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedResponse(msgspec.Struct):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(msgspec.Struct):
    code: str
    message: str


class IncompleteDetails(msgspec.Struct):
    reason: str


class ResponseObject(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    completed_at: int | None
    background: bool
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: msgspec.Raw
    service_tier: str
    store: bool
    temperature: float
    text: msgspec.Raw
    tool_choice: msgspec.Raw
    tools: msgspec.Raw
    top_logprobs: int = 0
    top_p: float
    truncation: str
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]


class _Event(msgspec.Struct, tag_field="type", kw_only=True):
    sequence_number: int


class ResponseCreated(_Event, tag="response.created", kw_only=True):
    response: ResponseObject


class ResponseInProgress(_Event, tag="response.in_progress", kw_only=True):
    response: ResponseObject


class OutputItemAdded(_Event, tag="response.output_item.added", kw_only=True):
    output_index: int
    item: OutputItem


class ContentPartAdded(_Event, tag="response.content_part.added", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(_Event, tag="response.output_text.delta", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[msgspec.Raw] = msgspec.field(default_factory=list)


class OutputTextDone(_Event, tag="response.output_text.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[msgspec.Raw] = msgspec.field(default_factory=list)


class ContentPartDone(_Event, tag="response.content_part.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class FunctionCallArgumentsDelta(_Event, tag="response.function_call_arguments.delta", kw_only=True):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(_Event, tag="response.function_call_arguments.done", kw_only=True):
    item_id: str
    output_index: int
    name: str
    arguments: str


class CustomToolCallInputDelta(_Event, tag="response.custom_tool_call_input.delta", kw_only=True):
    item_id: str
    output_index: int
    delta: str


class CustomToolCallInputDone(_Event, tag="response.custom_tool_call_input.done", kw_only=True):
    item_id: str
    output_index: int
    input: str


class OutputItemDone(_Event, tag="response.output_item.done", kw_only=True):
    output_index: int
    item: OutputItem


class ResponseCompleted(_Event, tag="response.completed", kw_only=True):
    response: ResponseObject


class ResponseIncomplete(_Event, tag="response.incomplete", kw_only=True):
    response: ResponseObject


class ResponseFailed(_Event, tag="response.failed", kw_only=True):
    response: ResponseObject


class StreamError(msgspec.Struct):
    type: str
    code: str | None
    message: str
    param: str | None


class ErrorEvent(_Event, tag="error", kw_only=True):
    """OpenAI's hybrid shape: flat fields for the spec, nested ``error`` so the SDKs raise ``APIError``."""

    code: str | None
    message: str
    param: str | None
    error: StreamError


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | OutputItemAdded
    | ContentPartAdded
    | OutputTextDelta
    | OutputTextDone
    | ContentPartDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | CustomToolCallInputDelta
    | CustomToolCallInputDone
    | OutputItemDone
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | ErrorEvent
)

_encoder = msgspec.json.Encoder()


def encode_sse(events: list[StreamEvent]) -> bytes:
    """SSE frames with ``event:`` equal to each event's ``type``, as OpenAI sends them."""
    out = bytearray()
    for event in events:
        out += b"event: "
        out += event.__struct_config__.tag.encode()  # type: ignore[union-attr]
        out += b"\ndata: "
        out += _encoder.encode(event)
        out += b"\n\n"
    return bytes(out)
