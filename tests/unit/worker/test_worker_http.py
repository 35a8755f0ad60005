"""What every HTTP provider shares: reading a server-sent event body line by line."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import httpx
import pytest

from worker.providers._http import sse_lines


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


async def _lines(chunks: list[bytes], headers: dict[str, str] | None = None) -> list[bytes]:
    response = httpx.Response(200, headers=headers, stream=_Chunks(chunks))
    return [line async for line in sse_lines(response)]


@pytest.mark.parametrize(
    "chunks",
    [
        [b'data: {"a":1}\n\ndata: [DONE]\n\n'],
        [b"da", b'ta: {"a"', b":1}\n", b"\ndata: [DO", b"NE]\n\n"],
        [b'data: {"a":1}\r\n\r\ndata: [DONE]\r', b"\n\r\n"],
        [b'data: {"a":1}\n', b"\n", b"data: [DONE]"],
    ],
    ids=["whole", "split-anywhere", "crlf-split-between-cr-and-lf", "no-final-newline"],
)
async def test_lines_come_whole_whatever_the_chunks(chunks: list[bytes]) -> None:
    lines = await _lines(chunks)
    assert [line for line in lines if line] == [b'data: {"a":1}', b"data: [DONE]"]
    assert lines[1] == b"", "the blank line that ends an event is kept"


async def test_a_compressed_body_is_decoded_first() -> None:
    body = gzip.compress(b"event: ping\ndata: {}\n\n")
    assert await _lines([body[:7], body[7:]], {"content-encoding": "gzip"}) == [b"event: ping", b"data: {}", b""]
