"""Fixtures of the integration tests: a client of the session's real Redis, on a database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url.rsplit("/", 1)[0] + "/15")
    await client.flushdb()
    yield client
    await client.aclose()
