"""One HTTP/1.1 client connection: an asyncio protocol that writes requests and parses replies with httptools.

httpx's own pool (httpcore) parses replies with h11, in pure Python: per upstream call, its state machine,
event objects and buffer scans were about 45% of what the worker spends, more than the gateway's own work.
httptools (llhttp, the parser uvicorn serves with) does the same in C from one callback per header and
body piece; no maintained library offers it behind httpx's transport interface, hence this module.

A connection serves one exchange at a time. The body is read as the pieces the socket delivered, joined
per read; the socket is paused while more than ``_READ_AHEAD`` bytes wait for the reader.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

__all__ = ("Connection", "Reply", "open_connection")

_READ_AHEAD = 1 << 20
"""Body bytes buffered ahead of the reader before the socket stops being read."""

_INCOMPLETE = "the upstream closed the connection before its reply was complete"


class Reply:
    """The status and headers of a reply; its body is read with :meth:`Connection.body`."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers


class Connection(asyncio.Protocol):
    """An HTTP/1.1 connection to one origin. Not for concurrent use: the pool hands it to one caller."""

    def __init__(self, origin: tuple[bytes, bytes, int]) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._complete = False
        self._keep_alive = False
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: httpx.TransportError | None = None
        self._closed = False
        self._reused = False
        self._answered = False
        self._writable: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports only quack like one

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream's reply is not valid HTTP/1.1: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        self._closed = True
        if self._head_done and not self._complete and not self._framed():
            self._complete = True  # a body delimited by the connection's end
            self._wake()
        else:
            self._fail(httpx.RemoteProtocolError(_INCOMPLETE))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._fail(httpx.ReadError(str(exc)) if exc else httpx.RemoteProtocolError(_INCOMPLETE))
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- httptools callbacks ----------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._parser.get_status_code() >= 200:
            self._head_done = True
            self._wake()

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_AHEAD and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._head_done:
            self._headers.clear()  # an informational (1xx) reply: the real one follows
            return
        self._complete = True
        # Asked once the parser has moved on to the next message, llhttp no longer knows.
        self._keep_alive = self._parser.should_keep_alive()
        self._wake()

    # --- the client's side ------------------------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """Open, idle, its last reply read to the end, and kept alive by the upstream."""
        return not self._closed and self._error is None and self._complete and self._keep_alive

    @property
    def closed_unanswered(self) -> bool:
        """Kept alive from an earlier exchange, then closed by the upstream before a byte of this reply."""
        return self._reused and self._closed and not self._answered

    async def send(self, head: bytes, body: bytes, timeouts: dict[str, float | None]) -> Reply:
        """Write a request and wait for its reply's status and headers."""
        assert self._transport is not None
        self._reused = self._complete
        self._answered = False
        self._headers = []
        self._head_done = self._complete = self._keep_alive = False
        self._transport.write(head + body if len(body) < 16384 else head)
        if len(body) >= 16384:
            self._transport.write(body)
        if self._writable is not None:
            await self._wait(self._writable, timeouts.get("write"), httpx.WriteTimeout)
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait(self._new_waiter(), timeouts.get("read"), httpx.ReadTimeout)
        return Reply(self._parser.get_status_code(), self._headers)

    async def body(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        """The reply's body, as it arrives; ends when the reply is complete."""
        while True:
            if self._pieces:
                data = self._pieces.popleft() if len(self._pieces) == 1 else b"".join(self._pieces)
                self._pieces.clear()
                self._buffered = 0
                if self._paused and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
                yield data
            elif self._complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._wait(self._new_waiter(), read_timeout, httpx.ReadTimeout)

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def mark_idle(self) -> None:
        self.idle_since = time.monotonic()

    # --- internals --------------------------------------------------------------------------------------------

    def _framed(self) -> bool:
        """Whether the reply says where its body ends (a length or chunks), so an early close is an error."""
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" in names or b"transfer-encoding" in names

    def _new_waiter(self) -> asyncio.Future[None]:
        self._waiter = self._loop.create_future()
        return self._waiter

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None and not (self._complete and not self._pieces):
            self._error = error
        self._wake()

    async def _wait(
        self, future: asyncio.Future[None], limit_s: float | None, on_timeout: type[httpx.TimeoutException]
    ) -> None:
        if limit_s is None:
            await future
            return
        # A timer handle per wait costs less than asyncio.timeout's context and task bookkeeping.
        timer = self._loop.call_later(limit_s, _expire, future)
        try:
            await future
        except TimeoutError:
            self.close()
            raise on_timeout(f"the upstream was silent for {limit_s:g} s") from None
        finally:
            timer.cancel()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def open_connection(
    origin: tuple[bytes, bytes, int], ssl_context: ssl.SSLContext | None, connect_timeout: float | None
) -> Connection:
    """A new connection to ``origin`` (scheme, host, port), TLS for https."""
    scheme, host, port = origin
    loop = asyncio.get_running_loop()
    name = host.decode("ascii")
    tls = ssl_context if scheme == b"https" else None
    try:
        async with asyncio.timeout(connect_timeout):
            _, protocol = await loop.create_connection(
                lambda: Connection(origin),
                name,
                port,
                ssl=tls,
                server_hostname=name if tls is not None else None,
            )
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(f"could not connect to {name}:{port} in {connect_timeout:g} s") from exc
    except OSError as exc:  # ssl.SSLError included
        raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
    return protocol
