"""Server-sent events read from an upstream's body, as the WHATWG HTML standard defines them.

One reader for every streaming provider, instead of one framing each (a ``data:`` line as an event, or
``event:`` and ``data:`` line by line, or data lines joined). Lines end with CR LF, LF or CR; ``event``,
``data`` (several lines joined with LF), ``id`` and ``retry`` fields are kept, comments and unknown fields
skipped, and an event is dispatched at its blank line. One leniency: an event still pending when the body
ends is dispatched too (the standard drops it), as upstreams that omit the last blank line exist.

Everything works on bytes, split from the transport's chunks here: httpx's byte, text and line decoders
would cost about a third of what a streamed token costs the worker, and msgspec reads JSON from bytes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import msgspec

__all__ = ("ServerSentEvent", "SseDecoder", "sse_events")


class ServerSentEvent(msgspec.Struct, frozen=True, gc=False):
    data: bytes
    event: bytes = b"message"
    id: bytes | None = None
    """The last event id seen so far on this stream, as the standard has it."""
    retry: int | None = None
    """The last reconnection time the stream asked for (ms)."""


class SseDecoder:
    """Turns chunks of a body into events: lines are split wherever the chunks were cut, and their fields
    gathered until a blank line dispatches them. One pass per chunk, as this runs for every token."""

    __slots__ = ("_after_cr", "_data", "_event", "_id", "_pending", "_retry")

    def __init__(self) -> None:
        self._pending = b""
        self._after_cr = False
        """The last chunk ended with CR: an LF opening the next one ends no line of its own."""
        self._data: list[bytes] = []
        self._event = b""
        self._id: bytes | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events ``chunk`` completes."""
        if self._after_cr:
            self._after_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        text = self._pending + chunk if self._pending else chunk
        lines = text.splitlines()  # at LF, CR LF and CR, in one pass
        if text.endswith((b"\n", b"\r")):
            self._pending = b""
            self._after_cr = text.endswith(b"\r")
        else:
            self._pending = lines.pop() if lines else b""
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data: "):
                # The hot path: most lines of an upstream's stream are data, written with the space.
                data.append(line[6:])
            elif not line:
                if data:
                    joined = data[0] if len(data) == 1 else b"\n".join(data)
                    events.append(ServerSentEvent(joined, self._event or b"message", self._id, self._retry))
                    data.clear()
                self._event = b""
            else:
                self._field(line)
        return events

    def close(self) -> list[ServerSentEvent]:
        """The event the body left pending, if any (see the module's note on this leniency)."""
        pending, self._pending = self._pending, b""
        return self.feed(pending + b"\n\n") if pending or self._data else []

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # a comment (a keep-alive, usually)
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._id = value
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)


async def sse_events(response: httpx.Response) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of a ``text/event-stream`` body, as its chunks arrive.

    The transport's chunks are read as they are; only a compressed body (the gateway asks for none) goes
    through httpx's decoding.
    """
    if response.headers.get("content-encoding", "identity") == "identity":
        chunks: AsyncIterator[bytes] = aiter(response.stream)  # type: ignore[arg-type]
    else:
        chunks = response.aiter_bytes()
    decoder = SseDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
