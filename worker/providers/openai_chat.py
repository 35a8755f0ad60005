"""Any upstream that speaks OpenAI Chat Completions, streamed.

The upstream is always asked to stream, with usage, so deltas reach the client as they arrive; the API
assembles a plain JSON answer when the client did not ask to stream.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from shared.config import OpenAIChannel
from shared.errors import UpstreamError
from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import GenerationRequest, ImagePart, Message, TextPart, ToolChoice
from shared.openai_chat import (
    AssistantMessage,
    ChatContentPart,
    ChatMessage,
    ChatToolCall,
    ChatToolChoice,
    FunctionCallSpec,
    FunctionDefinition,
    FunctionTool,
    ImageContent,
    ImageURL,
    NamedToolChoice,
    NamedToolChoiceFunction,
    StreamOptions,
    SystemMessage,
    TextContent,
    ToolMessage,
    UserMessage,
)
from worker.providers._base import ProviderOutput, UpstreamCall
from worker.providers._http import HttpEndpoint, bearer_headers
from worker.providers._sse import ServerSentEvent
from worker.providers._streaming import SseProvider

__all__ = ("OpenAIChatProvider",)


class _UpstreamRequest(msgspec.Struct):
    model: str
    messages: list[ChatMessage]
    stream: Literal[True]
    stream_options: StreamOptions
    tools: list[FunctionTool] | UnsetType = UNSET
    tool_choice: ChatToolChoice | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    max_completion_tokens: int | UnsetType = UNSET
    stop: list[str] | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    presence_penalty: float | UnsetType = UNSET
    frequency_penalty: float | UnsetType = UNSET
    response_format: msgspec.Raw | UnsetType = UNSET
    reasoning_effort: str | UnsetType = UNSET
    user: str | UnsetType = UNSET


class _FunctionDelta(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ChatToolCall] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    message: _Message | None = None
    finish_reason: str | None = None


class _TokenDetails(msgspec.Struct):
    cached_tokens: int | None = 0
    reasoning_tokens: int | None = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _TokenDetails | None = None
    completion_tokens_details: _TokenDetails | None = None


class _ErrorPayload(msgspec.Struct):
    message: str = "upstream error"


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: _ErrorPayload | None = None


_T = TypeVar("_T")
_chunk_decoder = msgspec.json.Decoder(_Chunk)
_encoder = msgspec.json.Encoder()


def _usage(usage: _Usage) -> Usage:
    prompt, completion = usage.prompt_tokens_details, usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_tokens=(prompt.cached_tokens or 0) if prompt else 0,
        reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0,
    )


def _content(message: Message) -> str | list[ChatContentPart]:
    if all(isinstance(part, TextPart) for part in message.content):
        return message.text()
    return [
        TextContent(part.text)
        if isinstance(part, TextPart)
        else ImageContent(ImageURL(part.url, UNSET if part.detail is None else part.detail))
        for part in message.content
        if isinstance(part, TextPart | ImagePart)
    ]


def _message(message: Message) -> ChatMessage:
    if message.role == "system":
        return SystemMessage(_content(message))
    if message.role == "tool":
        return ToolMessage(tool_call_id=message.tool_call_id or "", content=message.text())
    if message.role == "assistant":
        calls = [ChatToolCall(c.id, FunctionCallSpec(c.name, c.arguments)) for c in message.tool_calls]
        return AssistantMessage(content=message.text() or None, tool_calls=calls or UNSET)
    return UserMessage(_content(message))


def _tool_choice(choice: ToolChoice | None) -> ChatToolChoice | UnsetType:
    if choice is None:
        return UNSET
    if choice.mode == "function":
        return NamedToolChoice(NamedToolChoiceFunction(choice.name or ""))
    return choice.mode


def _unset_none(value: _T | None) -> _T | UnsetType:
    return UNSET if value is None else value


def build_upstream_request(request: GenerationRequest, model: str) -> _UpstreamRequest:
    sampling = request.sampling
    tools = [
        FunctionTool(FunctionDefinition(t.name, _unset_none(t.description), t.parameters, _unset_none(t.strict)))
        for t in request.tools
    ]
    return _UpstreamRequest(
        model=model,
        messages=[_message(m) for m in request.messages],
        stream=True,
        stream_options=StreamOptions(include_usage=True),
        tools=tools or UNSET,
        tool_choice=_tool_choice(request.tool_choice) if tools else UNSET,
        parallel_tool_calls=_unset_none(sampling.parallel_tool_calls) if tools else UNSET,
        temperature=_unset_none(sampling.temperature),
        top_p=_unset_none(sampling.top_p),
        max_completion_tokens=_unset_none(sampling.max_output_tokens),
        stop=sampling.stop or UNSET,
        seed=_unset_none(sampling.seed),
        presence_penalty=_unset_none(sampling.presence_penalty),
        frequency_penalty=_unset_none(sampling.frequency_penalty),
        response_format=sampling.response_format,
        reasoning_effort=_unset_none(sampling.reasoning_effort),
        user=_unset_none(sampling.user),
    )


class _ChunkTranslator:
    """Turns upstream chunks into provider output, numbering tool calls the way the client will see them."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.finish_reason: str | None = None
        self.done = False
        self._calls: dict[int, int] = {}

    def event(self, event: ServerSentEvent) -> list[ProviderOutput]:
        data = event.data.strip()
        if data == b"[DONE]":
            self.done = True
            return []
        return self.feed(_chunk_decoder.decode(data))

    def whole(self, body: bytes) -> list[ProviderOutput]:
        return self.feed(_chunk_decoder.decode(body))

    def outcome(self) -> list[ProviderOutput]:
        if self.finish_reason is None:
            raise UpstreamError(
                f"upstream '{self.channel}' ended the stream before finishing", code="upstream_incomplete"
            )
        return [Finished(self.finish_reason)]

    def feed(self, chunk: _Chunk) -> list[ProviderOutput]:
        if chunk.error is not None:
            raise UpstreamError(f"upstream failed mid-stream: {chunk.error.message}", code="upstream_stream_error")
        out: list[ProviderOutput] = []
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    out.append(TextDelta(delta.content))
                for call in delta.tool_calls or ():
                    out.extend(self._tool_call(call))
            elif choice.message is not None:
                out.extend(self._message(choice.message))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        if chunk.usage is not None:
            out.append(_usage(chunk.usage))
        return out

    def _tool_call(self, call: _ToolCallDelta) -> list[ProviderOutput]:
        out: list[ProviderOutput] = []
        function = call.function or _FunctionDelta()
        index = self._calls.get(call.index)
        if index is None:
            index = self._calls[call.index] = len(self._calls)
            out.append(ToolCallStarted(index, call.id or f"call_{index}", function.name or ""))
        if function.arguments:
            out.append(ToolCallDelta(index, function.arguments))
        return out

    def _message(self, message: _Message) -> list[ProviderOutput]:
        out: list[ProviderOutput] = [TextDelta(message.content)] if message.content else []
        for number, call in enumerate(message.tool_calls or ()):
            out.extend(self._tool_call(_ToolCallDelta(number, call.id, _FunctionDelta(call.function.name))))
            out.append(ToolCallDelta(self._calls[number], call.function.arguments))
        return out


class OpenAIChatProvider(SseProvider):
    def __init__(self, channel: OpenAIChannel, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(HttpEndpoint(channel, "/chat/completions", transport=transport))

    def request(self, call: UpstreamCall) -> tuple[bytes, list[tuple[str, str]]]:
        return _encoder.encode(build_upstream_request(call.request, call.model)), bearer_headers(call)

    def translator(self) -> _ChunkTranslator:
        return _ChunkTranslator(self._endpoint.name)
