"""shared/redis_client.py against real servers: the pool stays bounded under bursts, TLS with client
certificates and an ACL user connect, and a wrong CA, password or sentinel set is named, quickly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from shared.config import RedisConfig
from shared.redis_client import RedisSetupError, check_redis, redis_client
from tests.harness import free_port
from tests.redis_nodes import ACL_PASSWORD, TlsRedis, unix_socket_redis

_DATABASE = 13
"""A database no other test uses, so CLIENT LIST counts only this test's connections."""


def _connections(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return sum(1 for entry in client.client_list() if entry["db"] == str(_DATABASE))


async def _burst(client: Redis, size: int) -> None:
    """``size`` commands at once, a blocking read among every ten (as the relay's log tails do)."""
    await asyncio.gather(
        *(client.xread({"burst": "$"}, block=50) if n % 10 == 0 else client.incr("burst-count") for n in range(size))
    )


async def test_connections_stay_bounded_and_reused_over_bursts(redis_url: str) -> None:
    url = f"{redis_url.rsplit('/', 1)[0]}/{_DATABASE}"
    client = redis_client(RedisConfig(url=url, max_connections=8, pool_timeout_s=5))
    counts = []
    try:
        for _ in range(5):
            await _burst(client, 500)
            counts.append(_connections(redis_url))
        assert await client.get("burst-count") == b"2250"
    finally:
        await client.delete("burst-count")
        await client.aclose()
    print(f"\nbounded pool (max 8): connections after each burst of 500 commands {counts}")
    assert max(counts) <= 8
    assert len(set(counts)) == 1, "later bursts reuse the connections the first opened"


async def test_unbounded_pool_would_grow(redis_url: str) -> None:
    """The control: redis-py's default pool opens a connection per concurrent command."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{_DATABASE}"
    client = Redis.from_url(url)
    try:
        await _burst(client, 200)
        grown = _connections(redis_url)
    finally:
        await client.delete("burst-count")
        await client.aclose()
    print(f"\nunbounded pool: {grown} connections after one burst of 500 commands")
    assert grown > 2 * 8


async def test_waiting_for_a_connection_is_bounded(redis_url: str) -> None:
    url = f"{redis_url.rsplit('/', 1)[0]}/{_DATABASE}"
    client = redis_client(RedisConfig(url=url, max_connections=2, pool_timeout_s=0.3))
    try:
        held = [asyncio.ensure_future(client.xread({"hold": "$"}, block=2000)) for _ in range(2)]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            await client.ping()
        assert time.monotonic() - started < 1
        await asyncio.gather(*held)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedis]:
    with TlsRedis() as server:
        yield server


def _tls_config(server: TlsRedis, **changes: object) -> RedisConfig:
    files = server.files
    fields: dict[str, object] = {
        "url": server.url(),
        "ca_file": files.ca,
        "cert_file": files.cert("client"),
        "key_file": files.key("client"),
        "password_env": "TEST_REDIS_PASSWORD",
        **changes,
    }
    return RedisConfig(**fields)  # type: ignore[arg-type]


async def test_tls_with_client_certificate_and_acl_user(tls_redis: TlsRedis) -> None:
    config = _tls_config(tls_redis)
    assert await check_redis(config, {"TEST_REDIS_PASSWORD": ACL_PASSWORD}) is None
    client = redis_client(config, {"TEST_REDIS_PASSWORD": ACL_PASSWORD})
    try:
        assert await client.acl_whoami() == "gateway"
        info = await client.client_info()
        assert info["user"] == "gateway"
    finally:
        await client.aclose()


async def test_wrong_ca_is_named(tls_redis: TlsRedis) -> None:
    started = time.monotonic()
    with pytest.raises(RedisSetupError, match=r"redis\.ca_file"):
        await check_redis(
            _tls_config(tls_redis, ca_file=tls_redis.files.other_ca), {"TEST_REDIS_PASSWORD": ACL_PASSWORD}
        )
    assert time.monotonic() - started < 3


async def test_wrong_password_is_named(tls_redis: TlsRedis) -> None:
    with pytest.raises(RedisSetupError, match=r"redis\.password_env"):
        await check_redis(_tls_config(tls_redis), {"TEST_REDIS_PASSWORD": "wrong"})


async def test_unset_password_variable_is_named(tls_redis: TlsRedis) -> None:
    with pytest.raises(RedisSetupError, match=r"redis\.password_env names \$TEST_REDIS_PASSWORD"):
        await check_redis(_tls_config(tls_redis), {})


async def test_unreachable_sentinels_are_named() -> None:
    config = RedisConfig(sentinels=[f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"])
    started = time.monotonic()
    with pytest.raises(RedisSetupError, match=r"redis\.sentinels: none of 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+"):
        await check_redis(config)
    assert time.monotonic() - started < 3


async def test_a_plain_outage_is_waited_out_not_fatal() -> None:
    assert "unreachable" in str(await check_redis(RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0")))


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    with unix_socket_redis(tmp_path) as socket_path:
        yield socket_path


async def test_a_unix_socket_url_connects(unix_socket: Path) -> None:
    client = redis_client(RedisConfig(url=f"unix://{unix_socket}?db=2"))
    try:
        assert await client.set("over-unix", "yes")
        assert await client.get("over-unix") == b"yes"
    finally:
        await client.aclose()
