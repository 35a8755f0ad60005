"""Generation events → Anthropic Messages output: a ``message`` object, or its server-sent events.

A stream is ``message_start``, then each content block as ``content_block_start``, its deltas and
``content_block_stop`` (indexes from 0, one block open at a time), then ``message_delta`` with the stop
reason and usage, then ``message_stop``. Every frame carries ``event:`` and a ``data:`` whose ``type`` is
the same name, as the ``anthropic`` SDKs expect. Usage follows Anthropic's count: ``input_tokens``
excludes the tokens read from or written to the prompt cache, which are reported apart.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from api.messages.errors import ErrorDetail, anthropic_error
from shared.errors import GatewayError
from shared.events import (
    Failed,
    Finished,
    GenerationEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)

__all__ = (
    "PING_FRAME",
    "MessageBuilder",
    "MessageObject",
    "MessageStreamWriter",
    "StreamEvent",
    "error_frame",
    "frame",
    "tool_input",
)

PING_FRAME = b'event: ping\ndata: {"type":"ping"}\n\n'

_EMPTY_OBJECT = msgspec.Raw(b"{}")
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


class TextContent(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ThinkingContent(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class RedactedThinkingContent(msgspec.Struct, tag_field="type", tag="redacted_thinking"):
    data: str


class ToolUseContent(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: msgspec.Raw


Content = TextContent | ThinkingContent | RedactedThinkingContent | ToolUseContent


class MessageUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def of(cls, usage: Usage | None) -> MessageUsage:
        if usage is None:
            return cls(0, 0)
        cached = usage.cached_tokens + usage.cache_creation_tokens
        return cls(
            max(0, usage.input_tokens - cached), usage.output_tokens, usage.cache_creation_tokens, usage.cached_tokens
        )


class MessageObject(msgspec.Struct):
    id: str
    model: str
    content: list[Content]
    stop_reason: str | None
    stop_sequence: str | None
    usage: MessageUsage
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class MessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: MessageObject


class ContentBlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: Content


class TextDeltaBody(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class InputJsonDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class ThinkingDeltaBody(msgspec.Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class SignatureDelta(msgspec.Struct, tag_field="type", tag="signature_delta"):
    signature: str


class ContentBlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: TextDeltaBody | InputJsonDelta | ThinkingDeltaBody | SignatureDelta


class ContentBlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class StopInfo(msgspec.Struct):
    stop_reason: str
    stop_sequence: str | None


class MessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: StopInfo
    usage: MessageUsage


class MessageStop(msgspec.Struct, tag_field="type", tag="message_stop"):
    pass


class ErrorEvent(msgspec.Struct, tag_field="type", tag="error"):
    error: ErrorDetail


StreamEvent = (
    MessageStart | ContentBlockStart | ContentBlockDelta | ContentBlockStop | MessageDelta | MessageStop | ErrorEvent
)


def frame(event: StreamEvent) -> bytes:
    name: str = event.__struct_config__.tag  # type: ignore[assignment]
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"


def error_frame(error: GatewayError) -> bytes:
    """The ``event: error`` that ends a stream which failed after it began."""
    return frame(ErrorEvent(anthropic_error(error)[1]))


def tool_input(arguments: str) -> msgspec.Raw:
    """A call's arguments as the JSON object ``input`` must be; ``{}`` for none or for a broken text."""
    try:
        _object_decoder.decode(arguments)
    except msgspec.DecodeError:
        return _EMPTY_OBJECT
    return msgspec.Raw(arguments.encode())


def _stop_reason(finished: Finished, saw_tool_calls: bool) -> str:
    if finished.finish_reason == "length":
        return "max_tokens"
    if finished.finish_reason == "content_filter":
        return "refusal"
    if finished.finish_reason == "tool_calls" or saw_tool_calls:
        return "tool_use"
    return "stop_sequence" if finished.stop_sequence else "end_turn"


class MessageStreamWriter:
    """Feeds events in, gets SSE bytes out; ``done`` once the stream must be closed."""

    def __init__(self, *, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._usage: Usage | None = None
        self._next = 0
        self._open: tuple[str, int] | None = None
        """The open block's kind (``text``, ``thinking``, ``tool``) and index."""
        self._signed = False
        self._calls: dict[int, int] = {}
        """Tool call index → its block's index."""
        self.done = False

    def opening(self) -> bytes:
        shell = MessageObject(self._id, self._model, [], None, None, MessageUsage(0, 0))
        return frame(MessageStart(shell))

    def _start(self, kind: str, block: Content) -> bytes:
        out = self._close()
        index = self._next
        self._next += 1
        self._open = (kind, index)
        return out + frame(ContentBlockStart(index, block))

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        _, index = self._open
        self._open = None
        self._signed = False
        return frame(ContentBlockStop(index))

    def _in(self, kind: str) -> int | None:
        return self._open[1] if self._open is not None and self._open[0] == kind else None

    def _thinking(self, event: ThinkingDelta) -> bytes:
        if event.redacted:
            return self._start("redacted", RedactedThinkingContent(event.redacted)) + self._close()
        out = b""
        index = self._in("thinking")
        if index is None or self._signed:
            out = self._start("thinking", ThinkingContent("", ""))
            index = self._next - 1
        if event.text:
            out += frame(ContentBlockDelta(index, ThinkingDeltaBody(event.text)))
        if event.signature:
            self._signed = True
            out += frame(ContentBlockDelta(index, SignatureDelta(event.signature)))
        return out

    def feed(self, event: GenerationEvent) -> bytes:
        if isinstance(event, TextDelta):
            index = self._in("text")
            out = b""
            if index is None:
                out = self._start("text", TextContent(""))
                index = self._next - 1
            return out + frame(ContentBlockDelta(index, TextDeltaBody(event.text)))
        if isinstance(event, ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, ToolCallStarted):
            out = self._start("tool", ToolUseContent(event.call_id, event.name, _EMPTY_OBJECT))
            self._calls[event.index] = self._next - 1
            return out
        if isinstance(event, ToolCallDelta):
            index = self._calls.get(event.index)
            if index is None or not event.arguments:
                return b""
            return frame(ContentBlockDelta(index, InputJsonDelta(event.arguments)))
        if isinstance(event, Usage):
            self._usage = event
            return b""
        if isinstance(event, Finished):
            self.done = True
            stop = StopInfo(_stop_reason(event, bool(self._calls)), event.stop_sequence)
            return self._close() + frame(MessageDelta(stop, MessageUsage.of(self._usage))) + frame(MessageStop())
        if isinstance(event, Failed):
            self.done = True
            return self._close() + error_frame(GatewayError.from_info(event.error))
        return b""


class MessageBuilder:
    """Collects a whole generation into one ``message`` object."""

    def __init__(self, *, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._blocks: list[TextContent | ThinkingContent | RedactedThinkingContent | list[str]] = []
        self._calls: list[tuple[str, str, list[str]]] = []
        self._usage: Usage | None = None

    def _thinking(self, event: ThinkingDelta) -> None:
        last = self._blocks[-1] if self._blocks else None
        if event.redacted:
            self._blocks.append(RedactedThinkingContent(event.redacted))
            return
        if not isinstance(last, ThinkingContent) or last.signature:
            last = ThinkingContent("", "")
            self._blocks.append(last)
        last.thinking += event.text
        last.signature += event.signature

    def feed(self, event: GenerationEvent) -> MessageObject | None:
        """The message once the generation finished; raises its error if it failed."""
        if isinstance(event, TextDelta):
            last = self._blocks[-1] if self._blocks else None
            if isinstance(last, TextContent):
                last.text += event.text
            else:
                self._blocks.append(TextContent(event.text))
        elif isinstance(event, ThinkingDelta):
            self._thinking(event)
        elif isinstance(event, ToolCallStarted):
            arguments: list[str] = []
            self._calls.append((event.call_id, event.name, arguments))
            self._blocks.append(arguments)
        elif isinstance(event, ToolCallDelta):
            self._calls[event.index][2].append(event.arguments)
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Failed):
            raise GatewayError.from_info(event.error)
        elif isinstance(event, Finished):
            return self._build(event)
        return None

    def _build(self, finished: Finished) -> MessageObject:
        calls = iter(self._calls)
        content: list[Content] = []
        for block in self._blocks:
            if isinstance(block, list):
                call_id, name, arguments = next(calls)
                content.append(ToolUseContent(call_id, name, tool_input("".join(arguments))))
            else:
                content.append(block)
        stop = _stop_reason(finished, bool(self._calls))
        return MessageObject(self._id, self._model, content, stop, finished.stop_sequence, MessageUsage.of(self._usage))
