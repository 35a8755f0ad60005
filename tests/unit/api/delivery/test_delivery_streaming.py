"""Waiting for a generation while watching for the client to leave."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.delivery.streaming import unless_client_leaves
from shared.errors import ClientClosed, UpstreamError


class _Connection:
    """An ASGI request whose body has been read: ``receive`` answers only once the client leaves."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_the_result_when_the_client_stays() -> None:
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    connection: Any = _Connection()
    assert await unless_client_leaves(connection, work()) == "answer"


async def test_the_work_error_when_the_client_stays() -> None:
    async def work() -> str:
        raise UpstreamError("down")

    connection: Any = _Connection()
    with pytest.raises(UpstreamError):
        await unless_client_leaves(connection, work())


async def test_leaving_cancels_the_work_and_waits_for_its_clean_up() -> None:
    connection: Any = _Connection()
    cleaned: list[bool] = []

    async def work() -> str:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # the clean-up itself awaits (it cancels the generation in Redis)
            cleaned.append(True)
        return "never"

    asyncio.get_running_loop().call_later(0.02, connection.gone.set)
    with pytest.raises(ClientClosed):
        await unless_client_leaves(connection, work())
    assert cleaned == [True]
