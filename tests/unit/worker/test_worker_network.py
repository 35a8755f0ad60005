"""The upstream transport on the asyncio network layer, against real loopback servers: reuse, a connection
the server closed, timeouts, refused connections, TLS, and a forward/CONNECT proxy."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import uvloop

from worker.providers._network import UpstreamTransport, upstream_transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _Server:
    def __init__(self, handler: Handler) -> None:
        self.connections = 0
        self._handler = handler

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._handler(reader, writer)
        finally:
            writer.close()


async def _answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(REPLY)
            await writer.drain()


async def _answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(REPLY)
    await writer.drain()


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def _serve(handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[_Server, asyncio.Server, str]:
    server = _Server(handler)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    return server, listening, f"{'https' if tls else 'http'}://127.0.0.1:{port}/"


@pytest.fixture
async def transport() -> AsyncIterator[UpstreamTransport]:
    made = upstream_transport(httpx.Limits(max_connections=4))
    yield made
    await made.aclose()


async def _get(transport: httpx.AsyncBaseTransport, url: str, timeout_s: float = 5.0) -> httpx.Response:
    request = httpx.Request("GET", url, extensions={"timeout": httpx.Timeout(timeout_s).as_dict()})
    response = await transport.handle_async_request(request)
    await response.aread()
    await response.aclose()
    return response


async def test_connections_are_reused(transport: UpstreamTransport) -> None:
    server, listening, url = await _serve(_answer_each)
    async with listening:
        for _ in range(3):
            assert (await _get(transport, url)).content == b"ok"
    assert server.connections == 1


async def test_a_connection_the_server_closed_is_not_reused(transport: UpstreamTransport) -> None:
    server, listening, url = await _serve(_answer_once)
    async with listening:
        assert (await _get(transport, url)).content == b"ok"
        await asyncio.sleep(0.05)  # the server has closed its side of the idle connection
        assert (await _get(transport, url)).content == b"ok"
    assert server.connections == 2


async def test_a_silent_server_times_out(transport: UpstreamTransport) -> None:
    _, listening, url = await _serve(_never_answer)
    async with listening:
        with pytest.raises(httpx.ReadTimeout):
            await _get(transport, url, timeout_s=0.1)


async def test_a_refused_connection_is_a_connect_error(transport: UpstreamTransport) -> None:
    _, listening, url = await _serve(_answer_each)
    listening.close()
    await listening.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await _get(transport, url)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    server, listening, url = await _serve(_answer_each, tls=served)
    trusting = upstream_transport(httpx.Limits(), ssl_context=ssl.create_default_context(cafile=str(cert)))
    untrusting = upstream_transport(httpx.Limits(), ssl_context=ssl.create_default_context())
    async with listening, trusting, untrusting:
        for _ in range(2):
            assert (await _get(trusting, url)).content == b"ok"
        with pytest.raises(httpx.ConnectError):
            await _get(untrusting, url)
    assert server.connections == 1, "one TLS connection, reused"


@pytest.mark.parametrize(
    "scenario",
    [
        test_connections_are_reused,
        test_a_connection_the_server_closed_is_not_reused,
        test_a_silent_server_times_out,
        test_a_refused_connection_is_a_connect_error,
    ],
)
def test_the_same_on_uvloop_which_the_worker_runs(scenario: Callable[[UpstreamTransport], Awaitable[None]]) -> None:
    async def run() -> None:
        async with upstream_transport(httpx.Limits(max_connections=4)) as transport:
            await scenario(transport)

    uvloop.run(run())


def test_tls_on_uvloop(certificate: tuple[Path, Path]) -> None:
    uvloop.run(test_tls(certificate))


class _Proxy:
    """A tiny HTTP proxy: forwards absolute-form requests and tunnels CONNECT; records each request line."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0]
            self.requests.append(line)
            method, target, _ = line.split(b" ")
            if method == b"CONNECT":
                host, port = target.rsplit(b":", 1)
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                head = b""
            else:
                origin = httpx.URL(target.decode())
                up_reader, up_writer = await asyncio.open_connection(origin.host, origin.port)
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_plain_http_goes_through_the_forward_proxy_unless_no_proxy_exempts_it() -> None:
    proxy = _Proxy()
    proxying = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxying.sockets[0].getsockname()[1]}"
    server, listening, url = await _serve(_answer_each)
    through = UpstreamTransport(httpx.Limits(), proxies={"http": proxy_url})
    exempt = UpstreamTransport(httpx.Limits(), proxies={"http": proxy_url, "no": "localhost, 127.0.0.1"})
    async with proxying, listening, through, exempt:
        assert (await _get(through, url)).content == b"ok"
        assert proxy.requests == [f"GET {url} HTTP/1.1".encode()]
        assert (await _get(exempt, url)).content == b"ok"
        assert len(proxy.requests) == 1, "NO_PROXY: straight to the server"
    assert server.connections == 2


async def test_https_is_tunnelled_through_the_proxy_with_connect(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    proxy = _Proxy()
    proxying = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxying.sockets[0].getsockname()[1]}"
    server, listening, url = await _serve(_answer_each, tls=served)
    transport = UpstreamTransport(
        httpx.Limits(), ssl_context=ssl.create_default_context(cafile=str(cert)), proxies={"https": proxy_url}
    )
    async with proxying, listening, transport:
        for _ in range(2):
            assert (await _get(transport, url)).content == b"ok"
    host = url.removeprefix("https://").rstrip("/")
    assert proxy.requests == [f"CONNECT {host} HTTP/1.1".encode()], "one tunnel, reused"
    assert server.connections == 1
