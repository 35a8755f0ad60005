"""An upstream that speaks the OpenAI Responses API natively (``POST {base_url}/responses``), streamed.

The upstream is always asked to stream and never to store: deltas reach the client as they arrive, and
the gateway keeps its own copy of every response. A plain JSON reply is accepted too. Reasoning items,
hosted tools and any other event type the gateway cannot relay are skipped.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from shared.config import ResponsesChannel
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.openai_responses import FunctionCallItem, MessageItem, OutputTextPart, RefusalPart, decode_content
from worker.providers._base import ProviderOutput, UpstreamCall
from worker.providers._http import HttpEndpoint, bearer_headers
from worker.providers._sse import ServerSentEvent
from worker.providers._streaming import SseProvider
from worker.providers.openai_responses_wire import (
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ErrorEvent,
    EventKind,
    ItemEvent,
    ResponseBody,
    ResponseError,
    ResponseEvent,
    TextDeltaEvent,
    TextDoneEvent,
    UsageBody,
    build_request,
    decode_output_item,
)

__all__ = ("OpenAIResponsesProvider",)

_encoder = msgspec.json.Encoder()
_kind_decoder = msgspec.json.Decoder(EventKind)
_response_decoder = msgspec.json.Decoder(ResponseBody)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "response.output_text.delta": msgspec.json.Decoder(TextDeltaEvent),
    "response.refusal.delta": msgspec.json.Decoder(TextDeltaEvent),
    "response.output_text.done": msgspec.json.Decoder(TextDoneEvent),
    "response.refusal.done": msgspec.json.Decoder(TextDoneEvent),
    "response.output_item.added": msgspec.json.Decoder(ItemEvent),
    "response.output_item.done": msgspec.json.Decoder(ItemEvent),
    "response.function_call_arguments.delta": msgspec.json.Decoder(ArgumentsDeltaEvent),
    "response.function_call_arguments.done": msgspec.json.Decoder(ArgumentsDoneEvent),
    "response.completed": msgspec.json.Decoder(ResponseEvent),
    "response.incomplete": msgspec.json.Decoder(ResponseEvent),
    "response.failed": msgspec.json.Decoder(ResponseEvent),
    "error": msgspec.json.Decoder(ErrorEvent),
}

_TERMINAL_STATUS = {"response.completed": "completed", "response.incomplete": "incomplete", "response.failed": "failed"}
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
# Failures that are the request's fault: retrying it elsewhere would fail the same way.
_CLIENT_CODES = {"context_length_exceeded", "invalid_prompt"}


def _usage(usage: UsageBody) -> Usage:
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else 0
    return Usage(usage.input_tokens, usage.output_tokens, cached or 0, reasoning or 0)


def _failure(channel: str, error: ResponseError | None) -> GatewayError:
    code = None if error is None or error.code is None else str(error.code)
    message = (error.message if error else "") or "no reason given"
    if code == "rate_limit_exceeded":
        return RateLimited(f"upstream '{channel}' is rate limited: {message}")
    if code in _CLIENT_CODES:
        return InvalidRequest(message, code=code)
    return UpstreamError(f"upstream '{channel}' failed: {message}", code=code or "upstream_stream_error")


def _part_text(raw: msgspec.Raw) -> str:
    part = decode_content(raw)
    if isinstance(part, OutputTextPart):
        return part.text
    return part.refusal if isinstance(part, RefusalPart) else ""


class _Translator:
    """Turns Responses events into provider output, numbering function calls 0.. as they appear.

    Calls are found by ``item_id`` or, failing that, ``output_index``. Text or arguments that arrive only
    whole (in a ``.done`` event, an ``output_item.done`` or the final Response) are emitted then, unless
    they were streamed already, so upstreams that skip deltas still work and nothing is sent twice.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.finish_reason: str | None = None
        self.done = False
        """A terminal event (or a ``[DONE]``) came: nothing after it matters."""
        self._calls: dict[int, int] = {}
        self._call_items: dict[str, int] = {}
        self._calls_with_arguments: set[int] = set()
        self._texts: set[tuple[int, int]] = set()

    def event(self, event: ServerSentEvent) -> list[ProviderOutput]:
        if event.data == b"[DONE]":
            self.done = True
            return []
        return self._event(event.data)

    def whole(self, body: bytes) -> list[ProviderOutput]:
        return self.response(_response_decoder.decode(body))

    def outcome(self) -> list[ProviderOutput]:
        if self.finish_reason is None:
            raise UpstreamError(
                f"upstream '{self.channel}' ended the stream before finishing", code="upstream_incomplete"
            )
        return [Finished(self.finish_reason)]

    def _event(self, data: bytes) -> list[ProviderOutput]:
        kind = _kind_decoder.decode(data).type
        decoder = _decoders.get(kind)
        if decoder is None:
            return []
        event = decoder.decode(data)
        if isinstance(event, TextDeltaEvent):
            self._texts.add((event.output_index, event.content_index))
            return [TextDelta(event.delta)] if event.delta else []
        if isinstance(event, TextDoneEvent):
            return self._text_done(event)
        if isinstance(event, ItemEvent):
            return self._item(event.output_index, event.item)
        if isinstance(event, ArgumentsDeltaEvent):
            return self._arguments(self._find(event.item_id, event.output_index), event.delta)
        if isinstance(event, ArgumentsDoneEvent):
            number = self._find(event.item_id, event.output_index)
            return [] if number in self._calls_with_arguments else self._arguments(number, event.arguments)
        if isinstance(event, ErrorEvent):
            raise _failure(self.channel, event.error or ResponseError(event.code, event.message or ""))
        assert isinstance(event, ResponseEvent)
        # The event's type, not the object's status, says how the response ended.
        return self.response(event.response, _TERMINAL_STATUS[kind])

    def response(self, response: ResponseBody, status: str | None = None) -> list[ProviderOutput]:
        """A whole Response: what of its output was not streamed already, its usage, its finish reason."""
        status = status or response.status or ("failed" if response.error is not None else None)
        if status == "failed":
            raise _failure(self.channel, response.error)
        if status not in ("completed", "incomplete"):
            raise UpstreamError(
                f"upstream '{self.channel}' answered with a response still {status}", code="upstream_incomplete"
            )
        out: list[ProviderOutput] = []
        for index, raw in enumerate(response.output):
            out += self._item(index, raw)
        if response.usage is not None:
            out.append(_usage(response.usage))
        self.done = True
        if status == "incomplete":
            reason = response.incomplete_details.reason if response.incomplete_details else None
            self.finish_reason = _INCOMPLETE_REASONS.get(reason or "", "length")
        else:
            self.finish_reason = "tool_calls" if self._calls else "stop"
        return out

    def _text_done(self, event: TextDoneEvent) -> list[ProviderOutput]:
        key = (event.output_index, event.content_index)
        text = event.text or event.refusal
        if key in self._texts or not text:
            return []
        self._texts.add(key)
        return [TextDelta(text)]

    def _item(self, output_index: int, raw: msgspec.Raw) -> list[ProviderOutput]:
        item = decode_output_item(raw)
        if isinstance(item, FunctionCallItem):
            return self._call(output_index, item)
        if isinstance(item, MessageItem) and isinstance(item.content, list):
            out: list[ProviderOutput] = []
            for content_index, part in enumerate(item.content):
                out += self._text_done(TextDoneEvent(_part_text(part), "", output_index, content_index))
            return out
        return []

    def _call(self, output_index: int, item: FunctionCallItem) -> list[ProviderOutput]:
        number = self._find(item.id, output_index)
        out: list[ProviderOutput] = []
        if number is None:
            number = self._calls[output_index] = len(self._calls)
            if item.id:
                self._call_items[item.id] = number
            out.append(ToolCallStarted(number, item.call_id, item.name))
        if number not in self._calls_with_arguments:
            out += self._arguments(number, item.arguments)
        return out

    def _find(self, item_id: str | None, output_index: int) -> int | None:
        if item_id and item_id in self._call_items:
            return self._call_items[item_id]
        return self._calls.get(output_index)

    def _arguments(self, number: int | None, fragment: str) -> list[ProviderOutput]:
        if number is None or not fragment:
            return []
        self._calls_with_arguments.add(number)
        return [ToolCallDelta(number, fragment)]


class OpenAIResponsesProvider(SseProvider):
    """The upstream's ``/responses`` endpoint, called like :class:`OpenAIChatProvider`'s."""

    def __init__(self, channel: ResponsesChannel, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(HttpEndpoint(channel, "/responses", transport=transport))

    def request(self, call: UpstreamCall) -> tuple[bytes, list[tuple[str, str]]]:
        return _encoder.encode(build_request(call.request, call.model)), bearer_headers(call)

    def translator(self) -> _Translator:
        return _Translator(self._endpoint.name)
