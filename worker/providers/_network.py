"""The worker's httpx transport for upstream calls: direct, or through the proxy the environment names.

Direct calls go through :class:`~worker.providers._connection_pool.ConnectionPool` (HTTP/1.1 on asyncio
protocols, parsed by httptools). Calls through a proxy, a rare set-up, use httpcore's proxy pools on
:class:`AsyncioNetwork`: httpcore reaches the network through anyio otherwise, which wraps every socket
read and write in a cancel scope of its own; timeouts are ``asyncio.timeout`` and errors are mapped to
httpcore's exceptions as its anyio layer does.

The transport is a public ``httpx.AsyncBaseTransport``, so nothing here reaches into httpx's or
httpcore's private parts. Egress honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (read with the
standard library's rules when the transport is made).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import httpcore
import httpx

from worker.providers._connection_pool import ConnectionPool

__all__ = ("AsyncioNetwork", "UpstreamTransport", "upstream_transport")

_STREAM_LIMIT = 1 << 20
"""Bytes a connection buffers ahead of its reader before it stops reading the socket."""


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            self._writer.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info in ("ssl_object", "socket"):
            return self._writer.get_extra_info(info)
        if info == "is_readable":
            # Asked of an idle connection before it is reused: readable means the server closed it. The
            # event loop reads the socket as data comes, so its end shows on the reader, not the socket.
            return self._reader.at_eof() or _readable(self._writer.get_extra_info("socket"))
        return None


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block: data, or the peer's close. A socket already gone counts as closed."""
    if sock is None or sock.fileno() == -1:
        return True
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


class AsyncioNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network layer on asyncio streams."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, limit=_STREAM_LIMIT
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=_STREAM_LIMIT)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
"""httpcore's errors as httpx raises them, most specific first (httpx's own transport maps the same)."""


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except tuple(core for core, _ in _ERRORS) as exc:
        mapped = next(ours for core, ours in _ERRORS if isinstance(exc, core))
        raise mapped(str(exc)) from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, the host itself, or a domain it is under."""
    host = host.lower()
    for entry in no_proxy.lower().replace(" ", "").split(","):
        domain = entry.lstrip(".")
        if entry == "*" or (domain and (host == domain or host.endswith(f".{domain}"))):
            return True
    return False


class UpstreamTransport(httpx.AsyncBaseTransport):
    """Requests through the direct pool, or through the proxy the environment names for the URL's scheme
    (``NO_PROXY`` exempting hosts), each proxy with an httpcore pool of its own."""

    def __init__(
        self,
        limits: httpx.Limits,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        context = ssl_context or httpx.create_ssl_context()
        network = AsyncioNetwork()
        pool_limits: dict[str, Any] = {
            "ssl_context": context,
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "network_backend": network,
        }
        self._direct = ConnectionPool(limits, context)
        self._proxy_env = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._proxies: dict[str, httpcore.AsyncHTTPProxy] = {}
        for scheme in ("http", "https"):
            if url := self._proxy_env.get(scheme):
                proxy = httpx.URL(url if "://" in url else f"http://{url}")
                auth = (proxy.username.encode(), proxy.password.encode()) if proxy.username else None
                self._proxies[scheme] = httpcore.AsyncHTTPProxy(
                    proxy_url=httpcore.URL(scheme=proxy.raw_scheme, host=proxy.raw_host, port=proxy.port, target=b"/"),
                    proxy_auth=auth,
                    proxy_ssl_context=context if proxy.scheme == "https" else None,
                    **pool_limits,
                )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        proxy = self._proxies.get(url.scheme)
        if proxy is None or _bypassed(url.host, self._proxy_env.get("no", "")):
            return await self._direct.handle_async_request(request)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await proxy.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._direct.aclose()
        for proxy in self._proxies.values():
            await proxy.aclose()


def upstream_transport(limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None) -> UpstreamTransport:
    """The transport for upstream calls with ``limits`` (certificates as httpx finds them, unless
    ``ssl_context`` is given; proxies as the environment says)."""
    return UpstreamTransport(limits, ssl_context=ssl_context)
