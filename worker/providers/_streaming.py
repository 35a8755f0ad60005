"""The one way an HTTP provider streams: POST, read the SSE body with :func:`sse_events`, translate.

Each streaming provider says how to build its request and how to translate its upstream's events; the
call, the reading, the end of the stream and the errors are written here once.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from shared.errors import UpstreamError
from worker.providers._sse import ServerSentEvent, sse_events

if TYPE_CHECKING:
    from worker.providers._base import ProviderOutput, UpstreamCall
    from worker.providers._http import HttpEndpoint

__all__ = ("SseProvider", "StreamTranslator")


class StreamTranslator(Protocol):
    """One call's translation of its upstream's answer into provider output."""

    done: bool
    """The stream's last event came: nothing after it matters, and the body is not read further."""

    def event(self, event: ServerSentEvent) -> list[ProviderOutput]:
        """Output for one event of a streamed answer."""

    def whole(self, body: bytes) -> list[ProviderOutput]:
        """Output for an answer that came whole instead of as a stream."""

    def outcome(self) -> list[ProviderOutput]:
        """What ends the output (usage, ``Finished``); raise :class:`UpstreamError` if the answer ended early."""


class SseProvider(abc.ABC):
    """A provider whose upstream streams server-sent events from one POST endpoint."""

    def __init__(self, endpoint: HttpEndpoint) -> None:
        self._endpoint = endpoint

    @abc.abstractmethod
    def request(self, call: UpstreamCall) -> tuple[bytes, Sequence[tuple[str, str]]]:
        """The body and the per-call headers of ``call``."""

    @abc.abstractmethod
    def translator(self) -> StreamTranslator:
        """A translator for one call."""

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        body, headers = self.request(call)
        name = self._endpoint.name
        translator = self.translator()
        try:
            async with self._endpoint.post(body, headers) as response:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    for output in translator.whole(await response.aread()):
                        yield output
                else:
                    async with contextlib.aclosing(sse_events(response)) as events:
                        async for event in events:
                            for output in translator.event(event):
                                yield output
                            if translator.done:
                                break
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"upstream '{name}' sent an unreadable event: {exc}") from exc
        for output in translator.outcome():
            yield output

    async def aclose(self) -> None:
        await self._endpoint.aclose()
