"""Anthropic's Messages API, streamed.

The conversation is reshaped to what the Messages API accepts: system text moves to the top-level
``system``, tool results become ``tool_result`` blocks of a user turn, and consecutive turns of one role are
merged, because the API wants user and assistant to alternate. Options the API has no equivalent for
(seed, penalties, ``response_format``, ``reasoning_effort``) are left out.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from typing import Literal

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from shared.config import AnthropicChannel
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from shared.events import Finished, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import GenerationRequest, ImagePart, Message, TextPart, Thinking, ToolChoice
from worker.providers._base import ProviderOutput, UpstreamCall
from worker.providers._http import HttpEndpoint, error_from_response
from worker.providers._sse import ServerSentEvent
from worker.providers._streaming import SseProvider
from worker.providers.anthropic_wire import (
    STREAM_EVENTS,
    AnyToolChoice,
    AutoToolChoice,
    Base64Source,
    ContentBlock,
    ContentBlockDelta,
    ContentBlockStart,
    ErrorBody,
    ErrorDetail,
    ErrorEvent,
    ImageBlock,
    MessageDelta,
    MessageParam,
    MessagesRequest,
    MessageStart,
    MessageStop,
    Metadata,
    NamedToolChoice,
    NoToolChoice,
    RedactedThinkingBlock,
    StreamEvent,
    StreamUsage,
    TextBlock,
    ThinkingBlock,
    ThinkingParam,
    ToolChoiceParam,
    ToolParam,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
)

__all__ = ("AnthropicProvider", "build_messages_request")

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_OVERLOADED = 529
_UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_EMPTY_OBJECT = msgspec.Raw(b"{}")
_ANY_OBJECT_SCHEMA = msgspec.Raw(b'{"type":"object"}')
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_event_decoder: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)
_error_decoder = msgspec.json.Decoder(ErrorBody)
_encoder = msgspec.json.Encoder()


def _tool_use_id(call_id: str) -> str:
    """Anthropic takes only ``[a-zA-Z0-9_-]`` in ids; mapping calls and results alike keeps them paired."""
    return _UNSAFE_ID_CHARS.sub("_", call_id)


def _tool_input(arguments: str) -> msgspec.Raw:
    """The call's arguments as the JSON object ``input`` must be.

    Arguments that are not a JSON object (a reply cut off mid-call, say) become ``{}``: the call has to stay
    in the history, since its ``tool_result`` must follow a matching ``tool_use``, and nothing else is valid.
    """
    try:
        _object_decoder.decode(arguments)
    except msgspec.DecodeError:
        return _EMPTY_OBJECT
    return msgspec.Raw(arguments.encode())


def _image(part: ImagePart) -> ImageBlock:
    if not part.url.startswith("data:"):
        return ImageBlock(UrlSource(part.url))
    header, comma, payload = part.url[5:].partition(",")
    if not comma:
        raise InvalidRequest("An image data: URL has no ',' before its data.", param="messages")
    media_type, *params = header.split(";")
    if "base64" not in params:
        payload = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
    return ImageBlock(Base64Source(media_type, payload))


def _text(part: TextPart) -> TextBlock:
    return TextBlock(part.text, part.cache_control or UNSET)


def _parts(message: Message) -> list[TextBlock | ImageBlock]:
    # The API rejects empty text blocks, and clients often send "" beside tool calls.
    return [
        _text(part) if isinstance(part, TextPart) else _image(part)
        for part in message.content
        if not isinstance(part, TextPart) or part.text
    ]


def _thinking(thinking: Thinking) -> ThinkingBlock | RedactedThinkingBlock:
    return (
        RedactedThinkingBlock(thinking.redacted)
        if thinking.redacted
        else ThinkingBlock(thinking.text, thinking.signature)
    )


def _blocks(message: Message) -> list[ContentBlock]:
    if message.role == "tool":
        parts = _parts(message)
        plain = all(isinstance(p, TextBlock) and p.cache_control is UNSET for p in parts)
        content = message.text() if plain else parts
        return [ToolResultBlock(_tool_use_id(message.tool_call_id or ""), content, message.is_error)]
    blocks: list[ContentBlock] = []
    if message.role == "assistant":
        # Only signed reasoning can go back: Anthropic checks the signature of every thinking block.
        blocks += [_thinking(t) for t in message.thinking if t.redacted or t.signature]
    blocks += _parts(message)
    if message.role == "assistant":
        blocks += [ToolUseBlock(_tool_use_id(c.id), c.name, _tool_input(c.arguments)) for c in message.tool_calls]
    return blocks


def _conversation(messages: list[Message]) -> list[MessageParam]:
    turns: list[MessageParam] = []
    for message in messages:
        if message.role == "system" or not (blocks := _blocks(message)):
            continue
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1].role == role:
            turns[-1].content.extend(blocks)
        else:
            turns.append(MessageParam(role, blocks))
    for turn in turns:
        # Tool results must open their user turn; a stable sort keeps everything else in order.
        turn.content.sort(key=lambda block: not isinstance(block, ToolResultBlock))
    return turns


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> ToolChoiceParam | UnsetType:
    disable: bool | UnsetType = True if parallel is False else UNSET
    if choice is None:
        return UNSET if disable is UNSET else AutoToolChoice(disable)
    if choice.mode == "none":
        return NoToolChoice()
    if choice.mode == "required":
        return AnyToolChoice(disable)
    if choice.mode == "function":
        return NamedToolChoice(choice.name or "", disable)
    return AutoToolChoice(disable)


def _system(messages: list[Message]) -> str | list[TextBlock] | UnsetType:
    """The system text; as blocks when the client marked a cache breakpoint in it, so the mark stays."""
    parts = [p for m in messages if m.role == "system" for p in m.content if isinstance(p, TextPart) and p.text]
    if any(part.cache_control for part in parts):
        return [_text(part) for part in parts]
    return "\n\n".join(part.text for part in parts) or UNSET


def build_messages_request(request: GenerationRequest, model: str, default_max_tokens: int) -> MessagesRequest:
    sampling = request.sampling
    tools = [
        ToolParam(t.name, _ANY_OBJECT_SCHEMA if t.parameters is UNSET else t.parameters, t.description or UNSET)
        for t in request.tools
    ]
    return MessagesRequest(
        model=model,
        messages=_conversation(request.messages),
        max_tokens=sampling.max_output_tokens or default_max_tokens,
        stream=True,
        system=_system(request.messages),
        tools=tools or UNSET,
        tool_choice=_tool_choice(request.tool_choice, sampling.parallel_tool_calls) if tools else UNSET,
        temperature=UNSET if sampling.temperature is None else sampling.temperature,
        top_p=UNSET if sampling.top_p is None else sampling.top_p,
        top_k=UNSET if sampling.top_k is None else sampling.top_k,
        thinking=UNSET if sampling.thinking_budget is None else ThinkingParam(sampling.thinking_budget),
        stop_sequences=sampling.stop or UNSET,
        metadata=Metadata(sampling.user) if sampling.user else UNSET,
    )


def _stream_error(channel: str, error: ErrorDetail) -> GatewayError:
    message = error.message or error.type
    if error.type == "rate_limit_error":
        return RateLimited(f"upstream '{channel}' is rate limited: {message}")
    if error.type == "overloaded_error":
        return UpstreamError(f"upstream '{channel}' is overloaded: {message}", code="upstream_overloaded")
    return UpstreamError(
        f"upstream '{channel}' failed mid-stream ({error.type}): {message}", code="upstream_stream_error"
    )


def _response_error(channel: str, status: int, headers: httpx.Headers, body: bytes) -> GatewayError:
    if status != _OVERLOADED:
        return error_from_response(channel, status, headers, body)
    try:
        message = _error_decoder.decode(body).error.message
    except msgspec.DecodeError:
        message = ""
    return UpstreamError(
        f"upstream '{channel}' is overloaded (HTTP 529): {message or 'Overloaded'}", code="upstream_overloaded"
    )


class _StreamTranslator:
    """Turns stream events into provider output, numbering tool calls the way the client will see them."""

    def __init__(self, channel: str) -> None:
        self.done = False
        """``message_stop`` came."""
        self._channel = channel
        self._tools: dict[int, int] = {}
        """Content block index → tool call index."""
        self._usage: StreamUsage | None = None
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None

    def event(self, event: ServerSentEvent) -> list[ProviderOutput]:
        """Output for one event; ``ping`` and any kind this module does not know are skipped."""
        if event.event.decode("utf-8", "replace") not in STREAM_EVENTS:
            return []
        output = self.feed(_event_decoder.decode(event.data))
        return [] if output is None else [output]

    def whole(self, body: bytes) -> list[ProviderOutput]:
        """Nothing: the gateway always asks for a stream, so a body that is not one has no events, and
        :meth:`outcome` reports the answer as incomplete."""
        return []

    def outcome(self) -> list[ProviderOutput]:
        if not self.done:
            raise UpstreamError(
                f"upstream '{self._channel}' ended the stream before message_stop", code="upstream_incomplete"
            )
        usage = self.usage()
        return [self.finished()] if usage is None else [usage, self.finished()]

    def feed(self, event: StreamEvent) -> ProviderOutput | None:
        if isinstance(event, ContentBlockDelta):
            return self._delta(event)
        if isinstance(event, ContentBlockStart):
            return self._start(event)
        if isinstance(event, MessageStart):
            self._add_usage(event.message.usage)
        elif isinstance(event, MessageDelta):
            self._stop_reason = event.delta.stop_reason or self._stop_reason
            self._stop_sequence = event.delta.stop_sequence or self._stop_sequence
            if event.usage is not None:
                self._add_usage(event.usage)
        elif isinstance(event, MessageStop):
            self.done = True
        elif isinstance(event, ErrorEvent):
            raise _stream_error(self._channel, event.error)
        return None

    def _delta(self, event: ContentBlockDelta) -> ProviderOutput | None:
        delta = event.delta
        if delta.type == "text_delta" and delta.text:
            return TextDelta(delta.text)
        if delta.type == "thinking_delta" and delta.thinking:
            return ThinkingDelta(delta.thinking)
        if delta.type == "signature_delta" and delta.signature:
            return ThinkingDelta(signature=delta.signature)
        index = self._tools.get(event.index)
        if index is not None and delta.type == "input_json_delta" and delta.partial_json:
            return ToolCallDelta(index, delta.partial_json)
        return None

    def _start(self, event: ContentBlockStart) -> ProviderOutput | None:
        block = event.content_block
        if block.type == "tool_use":
            index = self._tools[event.index] = len(self._tools)
            return ToolCallStarted(index, block.id, block.name)
        if block.type == "text" and block.text:
            return TextDelta(block.text)
        if block.type == "thinking" and block.thinking:
            return ThinkingDelta(block.thinking)
        if block.type == "redacted_thinking":
            return ThinkingDelta(redacted=block.data)
        return None

    def _add_usage(self, usage: StreamUsage) -> None:
        # message_delta carries the counts that changed (output_tokens is cumulative); the rest stay.
        if self._usage is None:
            self._usage = usage
            return
        for field in StreamUsage.__struct_fields__:
            if (value := getattr(usage, field)) is not None:
                setattr(self._usage, field, value)

    def usage(self) -> Usage | None:
        """OpenAI counts cached prompt tokens inside the prompt; Anthropic counts them apart."""
        usage = self._usage
        if usage is None:
            return None
        cached = usage.cache_read_input_tokens or 0
        written = usage.cache_creation_input_tokens or 0
        return Usage(
            input_tokens=(usage.input_tokens or 0) + cached + written,
            output_tokens=usage.output_tokens or 0,
            cached_tokens=cached,
            cache_creation_tokens=written,
        )

    def finished(self) -> Finished:
        return Finished(_FINISH_REASONS.get(self._stop_reason or "end_turn", "stop"), stop_sequence=self._stop_sequence)


class AnthropicProvider(SseProvider):
    """Calls its httpx transport directly, as :class:`~worker.providers.openai_chat.OpenAIChatProvider` does."""

    def __init__(self, channel: AnthropicChannel, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._max_tokens = channel.max_tokens
        super().__init__(
            HttpEndpoint(
                channel,
                "/v1/messages",
                headers=[("anthropic-version", channel.anthropic_version)],
                transport=transport,
                on_error=_response_error,
            )
        )

    def request(self, call: UpstreamCall) -> tuple[bytes, list[tuple[str, str]]]:
        request = call.request
        body = _encoder.encode(build_messages_request(request, call.model, self._max_tokens))
        headers = [("x-request-id", request.request_id)]
        if call.traceparent:
            headers.append(("traceparent", call.traceparent))
        if call.account.api_key:
            headers.append(("x-api-key", call.account.api_key))
        return body, headers

    def translator(self) -> _StreamTranslator:
        return _StreamTranslator(self._endpoint.name)
