"""The one reply step of every front door: a whole answer as JSON, or a stream in the front door's format."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import pytest

from api.delivery.streaming import EventStreamResponse, Relayed, SseFormat, reply
from shared.errors import GatewayError, ServiceUnavailable, UpstreamError
from shared.events import Failed, Finished, GenerationEvent, Started, TextDelta


class _Subscription:
    """The events of one generation, as the relay would deliver them; ``fail`` is raised after them."""

    def __init__(self, events: list[GenerationEvent | None], fail: GatewayError | None = None) -> None:
        self._events = events
        self._fail = fail
        self.generation_id = "g"
        self.closed = False

    async def events(self) -> AsyncGenerator[GenerationEvent | None, None]:
        for event in self._events:
            await asyncio.sleep(0)
            yield event
        if self._fail is not None:
            raise self._fail
        await asyncio.sleep(60)

    def ready(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _Dispatcher:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def cancel(self, generation_id: str) -> None:
        self.cancelled.append(generation_id)


class _Connection:
    """An ASGI request whose client stays."""

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}


class _Answer(msgspec.Struct):
    text: str


def _relayed(events: list[GenerationEvent | None], fail: GatewayError | None = None) -> tuple[Relayed, Any, Any]:
    subscription, dispatcher = _Subscription(events, fail), _Dispatcher()
    return Relayed(subscription, dispatcher), subscription, dispatcher  # type: ignore[arg-type]


def _whole_text() -> Any:
    parts: list[str] = []

    def feed(event: GenerationEvent) -> _Answer | None:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        if isinstance(event, Failed):
            raise GatewayError.from_info(event.error)
        return _Answer("".join(parts)) if isinstance(event, Finished) else None

    return feed


class _Writer:
    """A front door's stream writer: one frame per text, one at the end."""

    def __init__(self) -> None:
        self.done = False

    def render(self, event: GenerationEvent) -> bytes:
        if isinstance(event, Finished):
            self.done = True
            return b"data: end\n\n"
        return f"data: {event.text}\n\n".encode() if isinstance(event, TextDelta) else b""


def _frames() -> SseFormat:
    writer = _Writer()
    return SseFormat(
        writer.render,
        lambda error: f"data: error {error.status}\n\n".encode(),
        lambda: writer.done,
        opening=b"data: open\n\n",
    )


async def _body(response: EventStreamResponse) -> bytes:
    iterator = response.iterator
    assert isinstance(iterator, AsyncGenerator)
    return b"".join([chunk async for chunk in iterator])


async def test_a_whole_answer_is_json_and_the_generation_is_not_cancelled() -> None:
    relayed, subscription, dispatcher = _relayed([Started("w"), TextDelta("he"), TextDelta("llo"), Finished("stop")])
    response = await reply(_Connection(), relayed, _whole_text(), keepalive_s=5)  # type: ignore[arg-type]
    assert not isinstance(response, EventStreamResponse)
    assert msgspec.json.decode(response.content) == {"text": "hello"}
    assert response.media_type == "application/json"
    assert subscription.closed and dispatcher.cancelled == []


async def test_a_stream_is_written_in_the_front_doors_format() -> None:
    relayed, subscription, dispatcher = _relayed([Started("w"), TextDelta("a"), TextDelta("b"), Finished("stop")])
    response = await reply(_Connection(), relayed, _frames(), keepalive_s=5)  # type: ignore[arg-type]
    assert isinstance(response, EventStreamResponse)
    assert await _body(response) == b"data: open\n\ndata: a\n\ndata: b\n\ndata: end\n\n"
    assert subscription.closed and dispatcher.cancelled == []


async def test_an_error_after_the_first_output_ends_the_stream_in_its_format() -> None:
    relayed, _, _ = _relayed([Started("w"), TextDelta("a")], fail=ServiceUnavailable("gone"))
    response = await reply(_Connection(), relayed, _frames(), keepalive_s=5)  # type: ignore[arg-type]
    assert isinstance(response, EventStreamResponse)
    assert await _body(response) == b"data: open\n\ndata: a\n\ndata: error 503\n\n"


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_failure_before_any_output_is_an_http_error(streaming: bool) -> None:
    relayed, subscription, dispatcher = _relayed([Started("w"), Failed(UpstreamError("down").info())])
    output = _frames() if streaming else _whole_text()
    with pytest.raises(GatewayError) as raised:
        await reply(_Connection(), relayed, output, keepalive_s=5)  # type: ignore[arg-type]
    assert raised.value.status == 502
    assert subscription.closed and dispatcher.cancelled == []  # the generation ended on its own


@pytest.mark.parametrize("streaming", [False, True])
async def test_an_error_while_waiting_cancels_the_generation(streaming: bool) -> None:
    relayed, subscription, dispatcher = _relayed([Started("w")], fail=ServiceUnavailable("Redis is gone"))
    output = _frames() if streaming else _whole_text()
    with pytest.raises(ServiceUnavailable):
        await reply(_Connection(), relayed, output, keepalive_s=5)  # type: ignore[arg-type]
    assert subscription.closed and dispatcher.cancelled == ["g"]
