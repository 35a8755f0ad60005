"""A lean HTTP/1.1 load generator over raw asyncio sockets, so the client's own cost stays small."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ("Sample", "run_load")

_TOKEN = b'"content":"'


@dataclass(slots=True)
class Sample:
    ttft_s: float
    """Request sent → first non-empty content delta (or the whole body, when not streaming)."""
    total_s: float
    ok: bool


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: bytes
    samples: list[Sample] = field(default_factory=list)


def _has_content(data: bytes) -> bool:
    position = data.find(_TOKEN)
    while position >= 0:
        nxt = data[position + len(_TOKEN) : position + len(_TOKEN) + 1]
        if nxt and nxt != b'"':
            return True
        position = data.find(_TOKEN, position + 1)
    return False


async def _one(conn: _Connection) -> Sample:
    start = time.perf_counter()
    conn.writer.write(conn.request)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.1 200")
    headers = head.lower()
    ttft = 0.0
    if b"transfer-encoding: chunked" in headers:
        while True:
            size = int((await conn.reader.readuntil(b"\r\n")).strip(), 16)
            data = await conn.reader.readexactly(size + 2)
            if not ttft and _has_content(data):
                ttft = time.perf_counter() - start
            if size == 0:
                break
    else:
        length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
        await conn.reader.readexactly(length)
    total = time.perf_counter() - start
    return Sample(ttft or total, total, ok)


async def _connect(url: str, body: bytes) -> _Connection:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer bench\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    return _Connection(reader, writer, request)


async def run_load(
    url: str, body: bytes, *, concurrency: int, requests: int | None, duration_s: float | None
) -> tuple[list[Sample], float]:
    """Run until ``requests`` are done or ``duration_s`` passed; returns samples and elapsed seconds."""
    connections = [await _connect(url, body) for _ in range(concurrency)]
    remaining = [requests if requests is not None else 1 << 62]
    deadline = time.perf_counter() + (duration_s if duration_s is not None else 1e9)

    async def loop(conn: _Connection) -> None:
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            conn.samples.append(await _one(conn))

    started = time.perf_counter()
    await asyncio.gather(*(loop(conn) for conn in connections))
    elapsed = time.perf_counter() - started
    for conn in connections:
        conn.writer.close()
    return [s for conn in connections for s in conn.samples], elapsed
