"""A response's head leaves with its body: one write for both, or the head alone at the end of the turn."""

from __future__ import annotations

import asyncio

from api.http_protocol import _HeadWithBody


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_the_head_goes_out_with_the_first_part_of_the_body() -> None:
    transport = _Transport()
    response = _HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    response.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []
    response.write(b"body")
    response.write(b"more")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"], "nothing written twice"
    assert response.get_extra_info("peername") == "info:peername"


async def test_a_head_no_body_follows_in_the_same_turn_goes_out_alone() -> None:
    transport = _Transport()
    response = _HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    response.write(b"head")
    await asyncio.sleep(0)
    assert transport.writes == [b"head"]
    response.write(b"body")
    assert transport.writes == [b"head", b"body"]


async def test_closing_sends_the_head_first() -> None:
    transport = _Transport()
    response = _HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    response.write(b"head")
    response.close()
    assert (transport.writes, transport.closed, response.is_closing()) == ([b"head"], True, True)
    await asyncio.sleep(0)
    assert transport.writes == [b"head"]
