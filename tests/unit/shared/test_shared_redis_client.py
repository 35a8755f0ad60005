"""How ``[redis]`` becomes a pool: bounded and blocking always, TLS, credentials and Sentinel as set."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.connection import BlockingConnectionPool, Connection, SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection
from redis.exceptions import DataError

from shared.config import ConfigError, RedisConfig, load_settings, redis_problem
from shared.redis_client import RedisSetupError, connection_pool


def test_plain_url_gives_a_bounded_blocking_pool() -> None:
    pool = connection_pool(RedisConfig(url="redis://user:pw@db.internal:6380/3", max_connections=7, pool_timeout_s=2))
    assert isinstance(pool, BlockingConnectionPool)
    assert pool.max_connections == 7 and pool.timeout == 2
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("db.internal", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("user", "pw")


def test_settings_override_the_urls_credentials() -> None:
    config = RedisConfig(url="redis://user:pw@db/0", username="acl-user", password_env="REDIS_PW")
    kwargs = connection_pool(config, {"REDIS_PW": "from-env"}).connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("acl-user", "from-env")


def test_an_unset_password_variable_is_named() -> None:
    with pytest.raises(RedisSetupError, match=r"redis\.password_env names \$REDIS_PW"):
        connection_pool(RedisConfig(url="redis://db/0", password_env="REDIS_PW"), {})


def test_tls_files_and_hostname_check_reach_the_connections() -> None:
    config = RedisConfig(url="rediss://db:6380/0", ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem")
    pool = connection_pool(config, {})
    assert issubclass(pool.connection_class, SSLConnection)
    kwargs = pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert kwargs["ssl_check_hostname"] is True


def test_sentinels_give_a_bounded_blocking_sentinel_pool() -> None:
    config = RedisConfig(
        url="rediss://:pw@ignored/2",
        sentinels=["10.0.0.1:26379", "sentinel-b:26380"],
        sentinel_primary="main",
        sentinel_password_env="SENTINEL_PW",
        max_connections=9,
    )
    pool = connection_pool(config, {"SENTINEL_PW": "s-pw"})
    assert isinstance(pool, SentinelConnectionPool) and isinstance(pool, BlockingConnectionPool)
    assert pool.max_connections == 9 and pool.service_name == "main"
    assert issubclass(pool.connection_class, SentinelManagedSSLConnection)
    assert "host" not in pool.connection_kwargs
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("pw", 2)
    sentinels = pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in sentinels
    ] == [
        ("10.0.0.1", 26379),
        ("sentinel-b", 26380),
    ]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "s-pw"


@pytest.mark.parametrize(
    "command",
    [
        ("SET", "k", "v"),
        ("EVALSHA", "f00d", 2, "k1", b"k2", 1.5, 0.1, -3, 10**20, "ünï", memoryview(b"view")),
        ("CONFIG GET", "maxmemory"),
        (b"CLIENT SETNAME", b"x"),
        ("SET", "k", b"\x00" * 10_000),
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(command: tuple[object, ...]) -> None:
    packed = connection_pool(RedisConfig(url="redis://db/0"), {}).make_connection()
    assert b"".join(packed.pack_command(*command)) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize("value", [None, True, bytearray(b"x"), object()])
def test_what_redis_py_refuses_to_send_is_refused(value: object) -> None:
    packed = connection_pool(RedisConfig(url="redis://db/0"), {}).make_connection()
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        packed.pack_command("SET", "k", value)


def test_neither_url_nor_sentinels_is_an_error() -> None:
    with pytest.raises(RedisSetupError, match=r"redis\.url"):
        connection_pool(RedisConfig(), {})


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            RedisConfig(url="redis://db/0", max_connections=1),
            "redis.max_connections must be at least 2 (pub/sub holds one connection)",
        ),
        (RedisConfig(sentinels=["no-port"]), "redis.sentinels: 'no-port' is not host:port"),
        (RedisConfig(sentinels=["h:99999"]), "redis.sentinels: 'h:99999' is not host:port"),
        (RedisConfig(url="redis://db/0", ca_file="/ca.pem"), "redis.ca_file: only with a rediss:// redis.url"),
        (RedisConfig(url="rediss://db/0", cert_file="/c.pem"), "redis.cert_file and redis.key_file go together"),
        (RedisConfig(url="rediss://db/0", ca_file="/ca.pem", sentinels=["h:1"]), None),
    ],
)
def test_redis_problems(config: RedisConfig, problem: str | None) -> None:
    assert redis_problem(config) == problem


def test_load_settings_rejects_a_bad_redis_section(tmp_path: Path) -> None:
    path = tmp_path / "aiapi.toml"
    path.write_text('[redis]\nsentinels = ["nope"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"redis\.sentinels: 'nope' is not host:port"):
        load_settings(path, {})
