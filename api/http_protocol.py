"""uvicorn's HTTP protocol (httptools), answering requests it cannot parse in OpenAI's error shape, and
writing a response's head with its body.

A request that httptools refuses (malformed, or a URL over its 65,535-byte limit) never reaches the
app: uvicorn answers it itself with a plain-text 400, which OpenAI's SDKs cannot read as an error. This
protocol sends the same 400, with the same headers, as ``{"error": {...}}``.

uvicorn writes a response's status line and headers as soon as the app starts the response, and its body
with the next message, which follows at once: two system calls where one does. Each response's
transport here holds its first write until the second, or until the end of the loop's turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shared.errors import InvalidRequest

__all__ = ("GatewayHttpProtocol",)

_BODY = msgspec.json.encode(
    InvalidRequest(
        "The HTTP request could not be parsed: it is malformed, or its URL is longer than 65,535 bytes.",
        code="invalid_http_request",
    ).body()
)


class GatewayHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(_BODY)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + _BODY)
        self.transport.close()

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:
            self.cycle.transport = _HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]


class _HeadWithBody:
    """One response's view of its connection's transport: the first write (the head) goes out with the
    second (the body's first part) in one write, or alone at the end of the loop's turn."""

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            self._held = data
            self._loop.call_soon(self._release)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
