"""Shared plumbing for handlers that relay one generation: wait for its first output, stream the rest.

Every front door answers the same way once it has submitted (:func:`reply`): the whole answer as JSON,
or a stream of server-sent events; only the formats differ, and each front door passes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Response
from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse
from redis.exceptions import RedisError

from api.draining import ShuttingDown
from api.metrics import ERRORS, FIRST_OUTPUT_KEY
from shared.errors import ClientClosed, GatewayError, InternalError
from shared.events import TERMINAL_EVENTS, Failed, GenerationEvent, Started

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.response.base import ASGIResponse
    from litestar.types import HTTPResponseBodyEvent, Receive, Send

    from api.delivery.queueing import Dispatcher
    from api.delivery.relay import Subscription

__all__ = ("Answer", "EventStreamResponse", "Relayed", "SseFormat", "reply", "sse_response", "unless_client_leaves")

log = logging.getLogger(__name__)

T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_KEEPALIVE = b": keep-alive\n\n"
_encoder = msgspec.json.Encoder()

Answer = Callable[[GenerationEvent], msgspec.Struct | None]
"""A non-streaming front door's format: fed every event, it returns the whole answer once it has it,
and raises the generation's error if it failed."""


@dataclass(frozen=True, slots=True)
class SseFormat:
    """A streaming front door's format: how it writes a generation as server-sent events."""

    render: Callable[[GenerationEvent], bytes]
    """An event's frames (empty bytes when the event shows nothing)."""
    render_error: Callable[[GatewayError], bytes]
    """The frames of an error that ends the stream."""
    is_done: Callable[[], bool]
    """Whether the frames rendered last end the stream."""
    opening: bytes = b""
    """Written before the first event."""
    keepalive: bytes = _KEEPALIVE
    """Written while nothing happens: an SSE comment, unless the protocol has its own."""


class Relayed:
    """One submitted generation as a handler sees it; always ``finish()`` it."""

    def __init__(self, subscription: Subscription, dispatcher: Dispatcher, *, detached: bool = False) -> None:
        self._subscription = subscription
        self._dispatcher = dispatcher
        self.events = subscription.events()
        self.ended = detached
        """Once true, finishing no longer cancels the generation; detached work always runs to its end."""
        self._finished = False

    def ready(self) -> bool:
        """Whether the next event is already here."""
        return self._subscription.ready()

    async def head(self, commit_after_s: float) -> list[GenerationEvent]:
        """Events up to the first output, so a failure before any output can still be an HTTP error.

        Gives up waiting after ``commit_after_s`` (long queue waits), after which the stream starts and
        carries keep-alives instead.
        """
        head: list[GenerationEvent] = []
        deadline = time.monotonic() + commit_after_s
        async for event in self.events:
            if isinstance(event, Failed):
                self.ended = True
                raise GatewayError.from_info(event.error)
            if event is not None:
                head.append(event)
                if not isinstance(event, Started):
                    break
            elif time.monotonic() >= deadline:
                break
        return head

    async def collect(self, feed: Callable[[GenerationEvent], T | None]) -> T:
        """Feed every event to ``feed`` until it returns a result (a non-streaming answer), then finish."""
        try:
            async for event in self.events:
                if event is None:
                    continue
                self.ended = self.ended or isinstance(event, TERMINAL_EVENTS)
                result = feed(event)
                if result is not None:
                    self.ended = True
                    return result
        finally:
            await self.finish()
        raise InternalError("The generation ended without a result.")

    async def finish(self) -> None:
        """Release the subscription; if the generation did not end, cancel it (the client is gone)."""
        if self._finished:
            return
        self._finished = True
        self._subscription.close()
        await self.events.aclose()
        if not self.ended:
            with contextlib.suppress(RedisError, OSError):
                await self._dispatcher.cancel(self._subscription.generation_id)


async def unless_client_leaves(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """The result of ``work``, unless the client closes its connection first.

    While a handler waits for a whole generation, or for the first output of a stream, nothing is written
    to the client, so only the ASGI ``http.disconnect`` tells that it left. Then ``work`` is cancelled
    (a ``Relayed`` that is not finished cancels its generation) and :class:`ClientClosed` is raised.
    """
    async with _cancelled_if_client_leaves(request.receive) as left:
        try:
            return await work
        except asyncio.CancelledError:
            if left():
                raise ClientClosed("The client closed the connection before the answer was ready.") from None
            raise


@contextlib.asynccontextmanager
async def _cancelled_if_client_leaves(receive: Receive) -> AsyncIterator[Callable[[], bool]]:
    """Run the block in this very task, cancelled if the client disconnects meanwhile; yields whether it did.

    A task of its own per block (or anyio's task group, as Litestar's ``Stream`` has) would put a task
    switch between an event's arrival and its write to the client, on every request's first token.
    """
    task = asyncio.current_task()
    assert task is not None
    watching = True
    gone = asyncio.ensure_future(_disconnected(receive))

    def cancel(_: object) -> None:
        if watching and not gone.cancelled():
            task.cancel()

    def left() -> bool:
        # True once the cancellation came from here (and only then: it is taken back).
        return gone.done() and not gone.cancelled() and task.uncancel() == 0

    gone.add_done_callback(cancel)
    try:
        yield left
    finally:
        watching = False
        gone.cancel()


async def _disconnected(receive: Receive) -> None:
    # The body has been read: the server's next message is the disconnect, whenever it happens.
    while (await receive())["type"] != "http.disconnect":
        pass


class _ASGIEventStream(ASGIStreamingResponse):
    """Litestar's streaming response, written from the request's own task, its last chunk ending the body."""

    __slots__ = ("_has_output", "_is_last", "_state")

    def __init__(
        self, *, is_last: Callable[[], bool], has_output: Callable[[], bool], state: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._is_last = is_last
        self._has_output = has_output
        self._state = state

    def _note_output(self) -> None:
        """Note (for the TTFT metric) when the first write that carries output leaves."""
        if FIRST_OUTPUT_KEY not in self._state and self._has_output():
            self._state[FIRST_OUTPUT_KEY] = time.perf_counter()

    async def send_body(self, send: Send, receive: Receive) -> None:
        iterator = self.iterator
        assert isinstance(iterator, AsyncGenerator)
        last: str | bytes = b""
        try:
            async with _cancelled_if_client_leaves(receive) as left:
                try:
                    async for chunk in iterator:
                        if self._is_last():
                            # The end of the body rides with the last chunk: one write, one wake-up of the
                            # client. It is sent once the watch is over, as a server reports a finished
                            # response as a disconnect.
                            last = chunk
                            break
                        self._note_output()
                        await send(_body_event(chunk, more=True))
                except asyncio.CancelledError:
                    if not left():
                        raise
                    return
            self._note_output()
            await send(_body_event(last, more=False))
        finally:
            await iterator.aclose()


def _body_event(chunk: str | bytes, *, more: bool) -> HTTPResponseBodyEvent:
    return {
        "type": "http.response.body",
        "body": chunk if isinstance(chunk, bytes) else chunk.encode(),
        "more_body": more,
    }


class EventStreamResponse(Stream):
    """A ``text/event-stream`` response of an async generator of SSE frames; right after a frame was
    produced, ``is_last`` tells whether it ends the stream and ``has_output`` whether output has begun
    (with it or before)."""

    __slots__ = ("_has_output", "_is_last")

    def __init__(
        self, content: AsyncGenerator[bytes, None], *, is_last: Callable[[], bool], has_output: Callable[[], bool]
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self._is_last = is_last
        self._has_output = has_output

    def to_asgi_response(self, app: Litestar | None, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        # What Litestar's Stream does, for the parts these responses use: no cookies, no background tasks.
        return _ASGIEventStream(
            is_last=self._is_last,
            has_output=self._has_output,
            state=request.scope.setdefault("state", {}),
            iterator=self.iterator,
            encoded_headers=kwargs.get("encoded_headers"),
            headers={**(kwargs.get("headers") or {}), **self.headers},
            media_type=self.media_type,
            status_code=self.status_code or kwargs.get("status_code"),
        )


async def reply(
    request: Request[Any, Any, Any], relayed: Relayed, output: Answer | SseFormat, *, keepalive_s: float
) -> Response[bytes] | EventStreamResponse:
    """Answer ``request`` with the generation ``relayed`` delivers: as the JSON object an :data:`Answer`
    builds, or as the stream an :class:`SseFormat` writes.

    A failure before any output is raised (an HTTP error); a stream whose first output takes longer than
    ``keepalive_s`` starts without it and carries keep-alives. A client that leaves meanwhile cancels
    the generation, as does any error here.
    """
    try:
        if not isinstance(output, SseFormat):
            answer = await unless_client_leaves(request, relayed.collect(output))
            return Response(_encoder.encode(answer), media_type="application/json")
        head = await unless_client_leaves(request, relayed.head(commit_after_s=keepalive_s))
    except BaseException:
        await relayed.finish()
        raise
    return sse_response(relayed, head, output, keepalive_s=keepalive_s)


def sse_response(
    relayed: Relayed, head: list[GenerationEvent], sse: SseFormat, *, keepalive_s: float
) -> EventStreamResponse:
    """The stream of ``relayed`` after ``head``, written in the format ``sse``, with its keep-alive
    whenever nothing happened for ``keepalive_s``."""
    render, render_error, is_done, opening, keepalive = (
        sse.render,
        sse.render_error,
        sse.is_done,
        sse.opening,
        sse.keepalive,
    )
    output = False
    """Whether a frame produced so far carries output: not the opening, a ``Started`` or a keep-alive."""

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal output
        batch: list[bytes] = []
        try:
            output = any(not isinstance(event, Started) for event in head)
            out = opening + b"".join(render(event) for event in head)
            last_write = time.monotonic()
            yield out
            if is_done():
                relayed.ended = True
                return
            async for event in relayed.events:
                if event is None:
                    if time.monotonic() - last_write >= keepalive_s:
                        last_write = time.monotonic()
                        yield keepalive
                    continue
                frame = render(event)
                if frame and not isinstance(event, Started):
                    output = True
                batch.append(frame)
                if is_done():
                    relayed.ended = True
                    yield b"".join(batch)
                    return
                # Events that arrived together leave in one write: one syscall and one wake-up of the
                # client per batch instead of per token.
                if not relayed.ready():
                    data = b"".join(batch)
                    batch.clear()
                    if data:
                        last_write = time.monotonic()
                        yield data
        except GatewayError as error:
            # A restarting server ends the stream, not the generation: that one is cancelled on finishing.
            relayed.ended = not isinstance(error, ShuttingDown)
            ERRORS.labels(str(error.status), error.code or error.type).inc()
            yield b"".join(batch) + render_error(error)
        finally:
            # The client may be gone and this task cancelled: the clean-up must still reach Redis.
            await asyncio.shield(relayed.finish())

    return EventStreamResponse(body(), is_last=is_done, has_output=lambda: output)
