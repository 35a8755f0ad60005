"""Generation events → Chat Completions output: SSE chunks, or one JSON completion.

Shapes follow OpenAI's wire exactly (see the project's wire reference): ``role`` only in the first
chunk, each tool call's id and name once, ``index`` on every tool-call delta, explicit ``null`` for
``finish_reason``/``logprobs``, a usage chunk with ``choices: []`` only when asked, ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from shared.errors import GatewayError
from shared.events import (
    Failed,
    Finished,
    GenerationEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)

__all__ = ("DONE_FRAME", "ChatCompletionBuilder", "ChatStreamWriter", "error_frame")

DONE_FRAME = b"data: [DONE]\n\n"


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    audio_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails

    @classmethod
    def of(cls, usage: Usage | None) -> CompletionUsage:
        usage = usage or Usage(0, 0)
        return cls(
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens + usage.output_tokens,
            PromptTokensDetails(cached_tokens=usage.cached_tokens),
            CompletionTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        )


class FunctionDelta(msgspec.Struct):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ToolCallChunk(msgspec.Struct):
    index: int
    function: FunctionDelta
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET


class Delta(msgspec.Struct):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    refusal: UnsetType | None = UNSET
    tool_calls: list[ToolCallChunk] | UnsetType = UNSET


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: CompletionUsage | UnsetType | None = UNSET


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str


class MessageToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class CompletionMessage(msgspec.Struct):
    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: None = None
    annotations: list[None] = msgspec.field(default_factory=list)
    tool_calls: list[MessageToolCall] | UnsetType = UNSET


class CompletionChoice(msgspec.Struct):
    index: int
    message: CompletionMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    object: Literal["chat.completion"] = "chat.completion"


_encoder = msgspec.json.Encoder()


def _frame(payload: msgspec.Struct) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def error_frame(error: GatewayError) -> bytes:
    """The mid-stream error chunk; both SDKs raise ``APIError`` on it."""
    return _frame(error.body())


def _finish_reason(reason: str, saw_tool_calls: bool) -> str:
    # Roo Code and Kilo Code only run tools when the turn ends with "tool_calls".
    return "tool_calls" if saw_tool_calls and reason == "stop" else reason


class ChatStreamWriter:
    """Feeds events in, gets SSE bytes out; ``done`` once the stream must be closed."""

    def __init__(self, *, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._usage: Usage | None = None
        self._saw_tool_calls = False
        self.done = False

    def _chunk(self, delta: Delta, finish_reason: str | None = None) -> bytes:
        chunk = ChatCompletionChunk(
            self._id,
            self._created,
            self._model,
            [ChunkChoice(0, delta, finish_reason=finish_reason)],
            usage=None if self._include_usage else UNSET,
        )
        return _frame(chunk)

    def opening(self) -> bytes:
        """The first chunk: the role, once, as OpenAI sends it."""
        return self._chunk(Delta(role="assistant", content="", refusal=None))

    def feed(self, event: GenerationEvent) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk(Delta(content=event.text))
        if isinstance(event, ToolCallStarted):
            self._saw_tool_calls = True
            call = ToolCallChunk(event.index, FunctionDelta(event.name, ""), id=event.call_id, type="function")
            return self._chunk(Delta(tool_calls=[call]))
        if isinstance(event, ToolCallDelta):
            return self._chunk(Delta(tool_calls=[ToolCallChunk(event.index, FunctionDelta(arguments=event.arguments))]))
        if isinstance(event, Usage):
            self._usage = event
            return b""
        if isinstance(event, Finished):
            self.done = True
            out = self._chunk(Delta(), _finish_reason(event.finish_reason, self._saw_tool_calls))
            if self._include_usage:
                usage_chunk = ChatCompletionChunk(
                    self._id, self._created, self._model, [], usage=CompletionUsage.of(self._usage)
                )
                out += _frame(usage_chunk)
            return out + DONE_FRAME
        if isinstance(event, Failed):
            self.done = True
            return error_frame(GatewayError.from_info(event.error))
        return b""


class ChatCompletionBuilder:
    """Collects a whole generation into one ``chat.completion`` object."""

    def __init__(self, *, completion_id: str, model: str, created: int) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._text: list[str] = []
        self._calls: list[tuple[str, str, list[str]]] = []
        self._usage: Usage | None = None

    def feed(self, event: GenerationEvent) -> ChatCompletion | None:
        """Returns the completion once the generation finished; raises its error if it failed."""
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallStarted):
            self._calls.append((event.call_id, event.name, []))
        elif isinstance(event, ToolCallDelta):
            self._calls[event.index][2].append(event.arguments)
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Failed):
            raise GatewayError.from_info(event.error)
        elif isinstance(event, Finished):
            return self._build(event.finish_reason)
        return None

    def _build(self, finish_reason: str) -> ChatCompletion:
        calls = [MessageToolCall(call_id, FunctionCall(name, "".join(args))) for call_id, name, args in self._calls]
        text = "".join(self._text)
        # Whitespace beside tool calls is no content (the text bridge leaves some around a call).
        message = CompletionMessage(content=text if text.strip() or not calls else None, tool_calls=calls or UNSET)
        choice = CompletionChoice(0, message, _finish_reason(finish_reason, bool(calls)))
        return ChatCompletion(self._id, self._created, self._model, [choice], CompletionUsage.of(self._usage))
