"""The one SSE reader of every streaming provider: lines however the chunks are cut, and events as the
WHATWG standard defines them."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import httpx
import pytest

from worker.providers._sse import ServerSentEvent, SseDecoder, sse_events


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


async def _events(chunks: list[bytes], headers: dict[str, str] | None = None) -> list[ServerSentEvent]:
    response = httpx.Response(200, headers=headers, stream=_Chunks(chunks))
    return [event async for event in sse_events(response)]


def _decoded(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SseDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()


@pytest.mark.parametrize(
    "chunks",
    [
        [b'data: {"a":1}\n\ndata: [DONE]\n\n'],
        [b"da", b'ta: {"a"', b":1}\n", b"\ndata: [DO", b"NE]\n\n"],
        [b'data: {"a":1}\r\n\r\ndata: [DONE]\r', b"\n\r\n"],
        [b'data: {"a":1}\r\rdata: [DONE]\r\r'],
        [b'data: {"a":1}\r', b"\r", b"data: [DONE]\r", b"\r"],
        [b'data: {"a":1}\n', b"\n", b"data: [DONE]"],
    ],
    ids=["whole", "split-anywhere", "crlf-split-between-cr-and-lf", "cr", "cr-at-chunk-ends", "no-final-newline"],
)
async def test_events_come_whole_whatever_the_chunks_and_line_ends(chunks: list[bytes]) -> None:
    assert await _events(chunks) == [ServerSentEvent(b'{"a":1}'), ServerSentEvent(b"[DONE]")]


def test_the_first_event_is_dispatched_by_its_blank_line_not_by_the_next_chunk() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent(b"a")]


def test_a_crlf_split_between_chunks_ends_one_line_not_two() -> None:
    chunks = [b"data: a\r", b"\ndata: b\r", b"\r\n", b"data: c"]
    assert _decoded(chunks) == [ServerSentEvent(b"a\nb"), ServerSentEvent(b"c")]


def test_fields_follow_the_standard() -> None:
    lines = [
        b": a comment, as keep-alives are",
        b"event: delta",
        b"id: 7",
        b"retry: 3000",
        b"data: first",
        b"data:second",
        b"data",
        b"unknown: ignored",
        b"",
        b"data:  two spaces keep one",
        b"retry: soon",
        b"id: bad\0id",
        b"",
        b"event: nothing",
        b"",
    ]
    assert _decoded([b"\n".join(lines) + b"\n"]) == [
        ServerSentEvent(b"first\nsecond\n", b"delta", b"7", 3000),
        ServerSentEvent(b" two spaces keep one", b"message", b"7", 3000),
    ], "an event without data is not dispatched, and its name does not carry over"


async def test_an_event_the_body_did_not_end_is_still_read() -> None:
    assert await _events([b"event: last\ndata: x"]) == [ServerSentEvent(b"x", b"last")]


async def test_a_compressed_body_is_decoded_first() -> None:
    body = gzip.compress(b"event: ping\ndata: {}\n\n")
    events = await _events([body[:7], body[7:]], {"content-encoding": "gzip"})
    assert events == [ServerSentEvent(b"{}", b"ping")]
