"""Shared plumbing for handlers that relay one generation: wait for its first output, stream the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from litestar.response import Stream
from redis.exceptions import RedisError

from api.metrics import ERRORS
from shared.errors import ClientClosed, GatewayError, InternalError
from shared.events import TERMINAL_EVENTS, Failed, GenerationEvent, Started

if TYPE_CHECKING:
    from litestar import Request

    from api.dispatch import Dispatcher
    from api.relay import Subscription

__all__ = ("Relayed", "sse_response", "unless_client_leaves")

log = logging.getLogger(__name__)

T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_KEEPALIVE = b": keep-alive\n\n"


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


async def unless_client_leaves(request: Request[Any, Any, Any], work: Coroutine[Any, Any, T]) -> T:
    """The result of ``work``, unless the client closes its connection first.

    While a handler waits for a whole generation, or for the first output of a stream, nothing is written
    to the client, so only the ASGI ``http.disconnect`` tells that it left. Then ``work`` is cancelled
    (a ``Relayed`` that is not finished cancels its generation) and :class:`ClientClosed` is raised.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            # Its clean-up (cancelling the generation) must be done before the handler goes on.
            await asyncio.wait((task,))
    if task.cancelled():
        raise ClientClosed("The client closed the connection before the answer was ready.")
    return task.result()


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    # The body has been read: the server's next message is the disconnect, whenever it happens.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def sse_response(
    relayed: Relayed,
    head: list[GenerationEvent],
    render: Callable[[GenerationEvent], bytes],
    *,
    opening: bytes,
    render_error: Callable[[GatewayError], bytes],
    is_done: Callable[[], bool],
    keepalive_s: float,
) -> Stream:
    async def body() -> AsyncIterator[bytes]:
        batch: list[bytes] = []
        try:
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
                        yield _KEEPALIVE
                    continue
                batch.append(render(event))
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
            relayed.ended = True
            ERRORS.labels(str(error.status), error.code or error.type).inc()
            yield b"".join(batch) + render_error(error)
        finally:
            # The client may be gone and this task cancelled: the clean-up must still reach Redis.
            await asyncio.shield(relayed.finish())

    return Stream(body(), media_type="text/event-stream", headers=SSE_HEADERS)
