"""The direct HTTP/1.1 pool against real loopback servers that write replies byte for byte: body framings,
broken replies, keep-alive rules, the connection limit and its queue, and request bodies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from worker.providers._connection_pool import ConnectionPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Server:
    def __init__(self, replies: list[bytes], *, close_after: bool = False, hold: asyncio.Event | None = None) -> None:
        self.replies = replies
        self.connections = 0
        self.requests: list[bytes] = []
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self._close_after = close_after
        self._hold = hold

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                body = await reader.readexactly(length) if length else b""
                if b"chunked" in head.lower():
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                if self._hold is not None:
                    await self._hold.wait()
                for piece in self.replies:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if self._close_after:
                    break
        writer.close()


@contextlib.asynccontextmanager
async def _serving(server: _Server) -> AsyncIterator[str]:
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    async with listening:
        yield f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/v1/x"
        for writer in server.writers:
            writer.close()  # ends each handler's wait for a next request
        await asyncio.gather(*server.handlers, return_exceptions=True)


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    made = ConnectionPool(httpx.Limits(max_connections=2, max_keepalive_connections=2), httpx.create_ssl_context())
    yield made
    await made.aclose()


async def _post(pool: ConnectionPool, url: str, body: bytes = b"{}", timeout_s: float = 5.0) -> httpx.Response:
    request = httpx.Request("POST", url, content=body, extensions={"timeout": httpx.Timeout(timeout_s).as_dict()})
    response = await pool.handle_async_request(request)
    async with contextlib.aclosing(response):
        await response.aread()
    return response


CHUNKED = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"6\r\ndata: \r\n",
    b"3\r\nab\n\r\n",
    b"0\r\n\r\n",
]


async def test_a_chunked_body_is_read_whole_and_the_connection_reused(pool: ConnectionPool) -> None:
    server = _Server(CHUNKED)
    async with _serving(server) as url:
        for _ in range(3):
            response = await _post(pool, url)
            assert response.status_code == 200
            assert response.content == b"data: ab\n"
            assert response.headers["content-type"] == "text/event-stream"
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert server.requests[0].endswith(b"\r\n\r\n{}")


async def test_a_body_that_ends_with_the_connection(pool: ConnectionPool) -> None:
    server = _Server([b"HTTP/1.1 200 OK\r\n\r\n", b"all ", b"of it"], close_after=True)
    async with _serving(server) as url:
        assert (await _post(pool, url)).content == b"all of it"
        assert (await _post(pool, url)).content == b"all of it"
    assert server.connections == 2, "a connection whose end framed the body is never reused"


async def test_connection_close_is_honoured(pool: ConnectionPool) -> None:
    server = _Server([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"])
    async with _serving(server) as url:
        for _ in range(2):
            assert (await _post(pool, url)).content == b"ok"
    assert server.connections == 2


async def test_an_informational_reply_is_skipped(pool: ConnectionPool) -> None:
    server = _Server([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"])
    async with _serving(server) as url:
        response = await _post(pool, url)
    assert (response.status_code, response.content) == (201, b"ok")


@pytest.mark.parametrize(
    "replies",
    [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-"],
        [b""],
    ],
    ids=["short-length", "unfinished-chunks", "cut-head", "nothing"],
)
async def test_a_reply_cut_short_is_a_protocol_error(pool: ConnectionPool, replies: list[bytes]) -> None:
    async with _serving(_Server(replies, close_after=True)) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await _post(pool, url)


async def test_garbage_is_a_protocol_error(pool: ConnectionPool) -> None:
    async with _serving(_Server([b"SMTP ready\r\n\r\n"])) as url:
        with pytest.raises(httpx.RemoteProtocolError, match=r"not valid HTTP/1\.1"):
            await _post(pool, url)


async def test_a_read_timeout_between_body_pieces(pool: ConnectionPool) -> None:
    stall = asyncio.Event()

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await stall.wait()
        writer.close()

    listening = await asyncio.start_server(stalled, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/"
    async with listening:
        request = httpx.Request("GET", url, extensions={"timeout": httpx.Timeout(0.1).as_dict()})
        response = await pool.handle_async_request(request)
        assert response.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()
        await response.aclose()
        stall.set()


async def test_callers_past_the_limit_wait_their_turn_or_time_out(pool: ConnectionPool) -> None:
    held = asyncio.Event()
    server = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], hold=held)
    async with _serving(server) as url:
        first = [asyncio.create_task(_post(pool, url)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await _post(pool, url, timeout_s=0.1)
        third = asyncio.create_task(_post(pool, url))
        await asyncio.sleep(0.05)
        assert not third.done()
        held.set()
        assert [r.content for r in await asyncio.gather(*first, third)] == [b"ok"] * 3
    assert server.connections == 2, "the waiting caller took a connection given back"


async def test_a_body_left_unread_closes_its_connection(pool: ConnectionPool) -> None:
    server = _Server(CHUNKED)
    async with _serving(server) as url:
        request = httpx.Request("POST", url, content=b"{}", extensions={"timeout": httpx.Timeout(5).as_dict()})
        response = await pool.handle_async_request(request)
        await response.aclose()
        assert (await _post(pool, url)).content == b"data: ab\n"
    assert server.connections == 2


async def test_a_streamed_request_body_is_sent_in_chunks(pool: ConnectionPool) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    server = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    async with _serving(server) as url:
        request = httpx.Request("POST", url, content=parts(), extensions={"timeout": httpx.Timeout(5).as_dict()})
        response = await pool.handle_async_request(request)
        await response.aread()
        await response.aclose()
    assert server.requests[0].endswith(b"\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")


async def test_an_idle_connection_past_its_expiry_is_not_reused() -> None:
    pool = ConnectionPool(httpx.Limits(keepalive_expiry=0.05), httpx.create_ssl_context())
    server = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    async with _serving(server) as url:
        await _post(pool, url)
        await asyncio.sleep(0.1)
        await _post(pool, url)
    await pool.aclose()
    assert server.connections == 2


async def test_a_large_body_is_read_through_the_read_ahead_bound(pool: ConnectionPool) -> None:
    big = b"x" * (3 << 20)
    server = _Server([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big), big])
    async with _serving(server) as url:
        request = httpx.Request("GET", url, extensions={"timeout": httpx.Timeout(5).as_dict()})
        response = await pool.handle_async_request(request)
        await asyncio.sleep(0.2)  # let the socket fill the buffer past its bound: reading pauses, not fails
        assert len(await response.aread()) == len(big)
        await response.aclose()


async def test_a_kept_alive_connection_the_upstream_closes_as_the_request_goes_out_is_retried_on_a_new_one(
    pool: ConnectionPool,
) -> None:
    connections: list[int] = []

    async def answers_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")  # the next request is read, then dropped unanswered
        writer.close()

    listening = await asyncio.start_server(answers_once, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/"
    async with listening:
        assert (await _post(pool, url, body=b"")).content == b"ok"
        assert (await _post(pool, url, body=b"")).content == b"ok"
    assert len(connections) == 2
