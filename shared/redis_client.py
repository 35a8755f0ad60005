"""The one place Redis connections are made, from ``[redis]``: the API, its pub/sub relay, the workers
and arq all take their pool from here.

Why one place: each role used to build its own client, with redis-py's default pool, which opens a new
connection whenever all are busy and never gives them back (an API under load waves went from 4 to 74).
Here the pool is bounded (``redis.max_connections``) and blocking: a command that finds every
connection busy waits up to ``redis.pool_timeout_s`` for one to be released instead of opening more.
TLS (``rediss://`` with ``redis.ca_file``, client certificates), ACL users and Sentinel are set up here
too, so every role follows a failover and speaks TLS the same way.

:func:`check_redis` connects once at start and turns the failures that waiting cannot cure (a wrong
password, a certificate the CA does not vouch for, sentinels that do not answer or know no such
primary) into a :class:`RedisSetupError` naming the setting.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool, parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import AuthenticationError, DataError, RedisError, ResponseError
from redis.typing import EncodableT

from shared.config import RedisConfig

__all__ = ("RedisSetupError", "check_redis", "connection_pool", "redis_client")

_HEALTH_CHECK_S = 30
"""An idle connection is pinged before reuse after this long, so a dead one is replaced, not used."""


class RedisSetupError(Exception):
    """Redis cannot be used as configured; the message names the setting to fix."""


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection instead of opening more."""


class _PackedByHiredis(AbstractConnection):
    """Commands packed by hiredis's C encoder: redis-py's asyncio connections pack them in Python, which
    took a quarter of the API's time in Redis calls. The bytes are the same (checked in the tests)."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        # As redis-py's own hiredis serializer (sync client): a multi-word command name is split.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # a bytearray fails as in redis-py
        except TypeError as exc:  # what redis-py's encoder refuses too (None, bool, other objects)
            raise DataError(str(exc)) from exc


_packed: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packed_by_hiredis(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """``connection_class`` (plain, TLS, Unix socket or Sentinel-managed) packing with hiredis."""
    if connection_class not in _packed:
        _packed[connection_class] = type(f"Packed{connection_class.__name__}", (_PackedByHiredis, connection_class), {})
    return _packed[connection_class]


def _secret(variable: str | None, setting: str, environ: Mapping[str, str]) -> str | None:
    if variable is None:
        return None
    value = environ.get(variable)
    if not value:
        raise RedisSetupError(f"{setting} names ${variable}, which is unset or empty")
    return value


def _connection_kwargs(config: RedisConfig, environ: Mapping[str, str]) -> dict[str, Any]:
    """What every connection to the primary is opened with, the URL's parts included."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": config.connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": _HEALTH_CHECK_S,
        "max_connections": config.max_connections,
        "timeout": config.pool_timeout_s,
    }
    tls = False
    if config.url:
        parsed = parse_url(config.url)
        tls = config.url.startswith("rediss://")
        for name in ("username", "password", "db"):
            if parsed.get(name) is not None:
                kwargs[name] = parsed[name]
        if not config.sentinels:
            kwargs.update(parsed)
        if config.url.startswith("unix://"):
            del kwargs["socket_keepalive"]  # a TCP option: a Unix socket's connection takes none
    if config.username is not None:
        kwargs["username"] = config.username
    password = _secret(config.password_env, "redis.password_env", environ)
    if password is not None:
        kwargs["password"] = password
    if tls:
        kwargs.update(ssl_ca_certs=config.ca_file, ssl_certfile=config.cert_file, ssl_keyfile=config.key_file)
        kwargs["ssl_check_hostname"] = True
        if config.sentinels:
            kwargs["ssl"] = True
    return kwargs


def connection_pool(config: RedisConfig, environ: Mapping[str, str] | None = None) -> ConnectionPool:
    """A bounded, blocking pool to the primary: the URL's server, or the one the sentinels name."""
    env = os.environ if environ is None else environ
    kwargs = _connection_kwargs(config, env)
    if config.sentinels:
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": config.connect_timeout_s,
            "socket_timeout": config.connect_timeout_s,
        }
        password = _secret(config.sentinel_password_env, "redis.sentinel_password_env", env)
        if password is not None:
            sentinel_kwargs["password"] = password
        addresses = [(host, int(port)) for host, _, port in (a.rpartition(":") for a in config.sentinels)]
        manager = Sentinel(addresses, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        pool: ConnectionPool = _BlockingSentinelPool(config.sentinel_primary, manager, is_master=True, **kwargs)  # type: ignore[no-untyped-call]
    elif not config.url:
        raise RedisSetupError("set redis.url (or REDIS_URL), or redis.sentinels")
    else:
        pool = BlockingConnectionPool(**kwargs)
    pool.connection_class = _packed_by_hiredis(pool.connection_class)
    return pool


def redis_client(config: RedisConfig, environ: Mapping[str, str] | None = None) -> Redis:
    """A client owning its own pool (closing the client closes the pool)."""
    return Redis.from_pool(connection_pool(config, environ))


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen) or "certificate" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _explain(config: RedisConfig, exc: BaseException) -> str | None:
    """The setting to blame for a failure waiting cannot cure, or ``None`` for a plain outage."""
    if isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and str(exc).startswith(("WRONGPASS", "NOAUTH", "NOPERM"))
    ):
        return f"Redis refused the credentials (redis.username / redis.password_env or the URL's): {exc}"
    if _is_tls_failure(exc):
        return f"TLS to Redis failed; check redis.ca_file, redis.cert_file, redis.key_file and the URL's host: {exc}"
    if config.sentinels and isinstance(exc, (MasterNotFoundError, TimeoutError)):
        return (
            f"redis.sentinels: none of {', '.join(config.sentinels)} named a primary "
            f"{config.sentinel_primary!r} (redis.sentinel_primary) that answers: {str(exc)[:300] or 'timed out'}"
        )
    return None


async def check_redis(config: RedisConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """Connect once. Raise :class:`RedisSetupError` for a setting that is wrong; return why Redis is
    merely unreachable (the roles wait that out), or ``None`` when it answered."""
    client = redis_client(config, environ)
    pool = client.connection_pool
    try:
        async with asyncio.timeout(config.connect_timeout_s * 2 + 1):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        problem = _explain(config, exc)
        if problem is not None:
            raise RedisSetupError(problem) from exc
        return f"Redis is unreachable ({exc})"
    finally:
        await client.aclose()
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()
    return None
