"""A pool of :mod:`worker.providers._http11` connections, and the httpx transport that sends through it.

Idle connections are kept per origin, newest first, up to ``max_keepalive_connections`` and for
``keepalive_expiry`` seconds; at ``max_connections`` a caller waits in line for one to be freed, up to
the request's pool timeout. Taking and giving back a connection is O(1) whatever the pool's size: the
worker holds thousands of slow streams at once, and a scan per call would cost more than the call.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator

import httpx

from worker.providers._http11 import Connection, Reply, open_connection

__all__ = ("ConnectionPool",)

Origin = tuple[bytes, bytes, int]


class ConnectionPool(httpx.AsyncBaseTransport):
    """Direct HTTP/1.1 requests to any origin, over a bounded set of kept-alive connections."""

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext) -> None:
        self._ssl = ssl_context
        self._max = limits.max_connections or 1 << 30
        self._max_idle = limits.max_keepalive_connections if limits.max_keepalive_connections is not None else 1 << 30
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else float("inf")
        self._idle: dict[Origin, list[Connection]] = {}
        self._idle_count = 0
        self._open = 0
        """Connections open or being opened, idle ones included."""
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if request.method == "HEAD":
            raise httpx.UnsupportedProtocol("HEAD requests are not sent to upstreams")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        if origin[0] not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        head, body = await _encoded(request)
        connection = await self._acquire(origin, timeouts)
        try:
            reply = await self._send(connection, head, body, timeouts)
        except httpx.TransportError:
            if not connection.closed_unanswered:
                raise
            # The upstream closed a kept-alive connection as the request went out (its idle timeout), so
            # it never read it: sent again on a new connection, as Go's and urllib3's clients do.
            connection = await self._acquire(origin, timeouts, reuse=False)
            reply = await self._send(connection, head, body, timeouts)
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=_Body(self, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _send(self, connection: Connection, head: bytes, body: bytes, timeouts: dict[str, float | None]) -> Reply:
        """The reply's head; on any failure the connection is closed and given up."""
        try:
            return await connection.send(head, body, timeouts)
        except BaseException:
            self._release(connection, reuse=False)
            raise

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._open -= self._idle_count
        self._idle.clear()
        self._idle_count = 0

    async def _acquire(self, origin: Origin, timeouts: dict[str, float | None], *, reuse: bool = True) -> Connection:
        while (connection := self._take_idle(origin) if reuse else None) is None and self._open >= self._max:
            if not self._close_one_idle():
                await self._wait_turn(timeouts.get("pool"))
        if connection is not None:
            return connection
        self._open += 1
        try:
            return await open_connection(origin, self._ssl, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._next_in_line()
            raise

    def _take_idle(self, origin: Origin) -> Connection | None:
        """The newest idle connection to ``origin`` still usable; stale ones met on the way are closed."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.reusable and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
            self._open -= 1
        return None

    def _release(self, connection: Connection, *, reuse: bool) -> None:
        if reuse and connection.reusable and self._idle_count < self._max_idle:
            connection.mark_idle()
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
        else:
            connection.close()
            self._open -= 1
        self._next_in_line()

    def _close_one_idle(self) -> bool:
        """Make room at the limit by closing an idle connection to another origin."""
        for connections in self._idle.values():
            if connections:
                connections.pop(0).close()
                self._idle_count -= 1
                self._open -= 1
                return True
        return False

    async def _wait_turn(self, pool_timeout: float | None) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            async with asyncio.timeout(pool_timeout):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._next_in_line()  # woken just as it gave up: the turn goes to the next in line
            turn.cancel()
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(f"no upstream connection free within {pool_timeout:g} s") from None
            raise

    def _next_in_line(self) -> None:
        """Wake the first caller still waiting, as a place or an idle connection is free now."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return


class _Body(httpx.AsyncByteStream):
    """The reply's body; the connection goes back to the pool once the body is read to its end, or is
    closed when the reader stops before."""

    def __init__(self, pool: ConnectionPool, connection: Connection, read_timeout: float | None) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        async for data in connection.body(self._read_timeout):
            yield data
        self._done(reuse=True)

    async def aclose(self) -> None:
        self._done(reuse=False)

    def _done(self, *, reuse: bool) -> None:
        if self._connection is not None:
            self._pool._release(self._connection, reuse=reuse)
            self._connection = None


async def _encoded(request: httpx.Request) -> tuple[bytes, bytes]:
    """The request's head and body as written on the wire (a streamed body framed in chunks)."""
    target = request.url.raw_path
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
    lines += [b"%s: %s" % (name, value) for name, value in request.headers.raw]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if isinstance(request.stream, httpx.ByteStream):
        return head, request.content
    parts = [part async for part in request.stream]  # type: ignore[union-attr]
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        framed = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts if part]
        return head, b"".join([*framed, b"0\r\n\r\n"])
    return head, b"".join(parts)
