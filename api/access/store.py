"""API keys in Redis: the admin API's stored keys, the per-minute limits and the usage accounts.

Keys are stored only as their SHA-256 digest: ``AccessKeys.records`` maps a digest to the key's record,
so a request's key is found with one ``HGET``. Limits and usage live under each key's own hash tag
(:class:`shared.keys.AccessKeys`) and are counted by name, so a config key keeps its budget when its
secret is rotated.

Both per-minute limits are sliding windows of one-second buckets (``shared/lua/access_limit.lua``), not
fixed minutes: a fixed window lets a client spend twice its limit across a minute boundary, and its
Retry-After would always point at the next full minute. Sixty buckets keep memory bounded per key (a
sliding log would keep one entry per request) while the Retry-After is exact to the second. Each window
keeps its running total beside its buckets, so an admission reads that and evicts only the buckets the
window has just passed, instead of reading and summing all sixty. The windows
use the hosts' clocks (not Redis's): the API charges a request on admission and the worker settles its
tokens when it ends (:mod:`shared.usage`), so API and worker hosts are expected to keep their clocks in
sync (NTP).
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError, WatchError

from shared.access_config import KeyPolicy, key_digest
from shared.batching import RedisBatcher
from shared.errors import Conflict, RedisUnavailable
from shared.keys import AccessKeys
from shared.scripts import Scripts
from shared.usage import METRICS, MICRO_USD, WINDOW_S

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ("KeyStore", "KeyUsage", "ModelUsage", "StoredKey", "UsageCounts", "Verdict")

log = logging.getLogger(__name__)


class StoredKey(KeyPolicy, frozen=True, kw_only=True):
    """A key created through the admin API (the key itself is never stored)."""

    created: int
    """Unix time of creation."""


class Verdict(enum.IntEnum):
    """What the rate-limit script decided (its first return value)."""

    ADMITTED = 0
    RPM = 1
    TPM = 2
    BUDGET = 3
    BUDGET_USD = 4
    BUDGET_USD_MONTHLY = 5


class UsageCounts(msgspec.Struct, kw_only=True):
    requests: int = 0
    """Generations relayed for the key, finished or not."""
    errors: int = 0
    """Of those, the ones that failed or were cancelled before they finished."""
    estimated: int = 0
    """Of those, the ones whose tokens were estimated from their text (the upstream reported none)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    """Part of ``input_tokens``: read from the upstream's prompt cache."""

    def add(self, metric: str, amount: int) -> None:
        setattr(self, metric, getattr(self, metric) + amount)


class ModelUsage(UsageCounts, kw_only=True):
    model: str


class KeyUsage(msgspec.Struct, kw_only=True):
    name: str
    total: UsageCounts
    models: list[ModelUsage]
    spent_tokens: int
    """Input plus output tokens over the key's life: what its budget is checked against."""
    spent_usd: float
    """Dollars over the key's life, at the price table: what ``budget_usd`` is checked against."""
    spent_usd_month: float
    """Dollars this calendar month (UTC): what ``budget_usd_monthly`` is checked against."""
    requests_last_minute: int
    """Requests admitted in the last 60 s (counted only for keys with an rpm limit)."""
    tokens_last_minute: int
    object: str = "api_key.usage"


_record_decoder = msgspec.json.Decoder(StoredKey)
_encoder = msgspec.json.Encoder()


def _month(now_s: int) -> str:
    """The spend hash's field of the month (UTC) of ``now_s``."""
    return time.strftime("%Y-%m", time.gmtime(now_s))


def _window_total(buckets: dict[bytes, bytes], now_s: int) -> int:
    return sum(int(amount) for at, amount in buckets.items() if int(at) > now_s - WINDOW_S)


class KeyStore:
    """Every Redis operation on API keys. Redis failures become 503 (``RedisUnavailable``)."""

    def __init__(self, redis: Redis, *, batcher: RedisBatcher | None = None) -> None:
        self._redis = redis
        self._limit = Scripts(redis).access_limit
        self._batcher = batcher or RedisBatcher(redis)
        """Admissions go in one round trip with whatever else this process sends in the same tick."""

    async def lookup(self, digest: str) -> StoredKey | None:
        try:
            data: bytes | None = await self._redis.hget(AccessKeys.records, digest)  # type: ignore[misc]
        except RedisError as exc:
            raise RedisUnavailable() from exc
        return _record_decoder.decode(data) if data else None

    async def stored(self) -> list[StoredKey]:
        records: list[bytes] = await self._redis.hvals(AccessKeys.records)  # type: ignore[misc]
        return sorted((_record_decoder.decode(data) for data in records), key=lambda key: key.name)

    async def find(self, name: str) -> StoredKey | None:
        digest = await self._digest(name)
        return await self.lookup(digest) if digest else None

    async def _digest(self, name: str) -> str | None:
        digest: bytes | None = await self._redis.hget(AccessKeys.names, name)  # type: ignore[misc]
        return digest.decode() if digest else None

    async def create(self, policy: KeyPolicy) -> tuple[str, StoredKey]:
        """Generate a key for ``policy``, store its digest and record; return the key (shown only now)."""
        secret = f"sk-aiapi-{secrets.token_urlsafe(32)}"
        digest = key_digest(secret)
        record = StoredKey(**msgspec.structs.asdict(policy), created=int(time.time()))
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(AccessKeys.names)
                if await pipe.hexists(AccessKeys.names, policy.name):  # type: ignore[misc]
                    raise Conflict(f"A key named '{policy.name}' exists already.", code="key_exists", param="name")
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(AccessKeys.names, policy.name, digest)
                pipe.hset(AccessKeys.records, digest, _encoder.encode(record).decode())
                await pipe.execute()
            except WatchError:
                raise Conflict("The keys changed meanwhile; try again.", code="key_changed") from None
        return secret, record

    async def replace(self, record: StoredKey) -> bool:
        """Store new limits for an existing key; ``False`` when there is no key of that name."""
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                # Watched, so that a key deleted meanwhile is not brought back to life by its old digest.
                await pipe.watch(AccessKeys.names)
                digest: bytes | None = await pipe.hget(AccessKeys.names, record.name)  # type: ignore[misc]
                if digest is None:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(AccessKeys.records, digest.decode(), _encoder.encode(record).decode())
                await pipe.execute()
            except WatchError:
                raise Conflict("The keys changed meanwhile; try again.", code="key_changed") from None
        return True

    async def delete(self, name: str) -> bool:
        """Remove the key and its limits and usage; ``False`` when there is no key of that name."""
        digest = await self._digest(name)
        if digest is None:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(AccessKeys.records, digest)
            pipe.hdel(AccessKeys.names, name)
            await pipe.execute()
        keys = AccessKeys(name)
        await self._redis.delete(
            keys.requests, keys.requests_total, keys.tokens, keys.tokens_total, keys.spent, keys.spent_usd, keys.usage
        )
        return True

    async def admit(self, key: KeyPolicy, now_ms: int, reserve_tokens: int = 0) -> tuple[Verdict, int]:
        """Check the key's budget and windows, counting the request if admitted; ``(verdict, ms to wait)``.

        ``reserve_tokens`` (the prompt's estimate) is charged on admission; the worker settles it later.
        """
        keys = AccessKeys(key.name)
        try:
            verdict, wait_ms = await self._batcher.script(
                self._limit,
                keys=[keys.requests, keys.tokens, keys.spent, keys.spent_usd, keys.requests_total, keys.tokens_total],
                args=[
                    now_ms,
                    key.rpm,
                    key.tpm,
                    key.budget_tokens,
                    reserve_tokens,
                    round(key.budget_usd * MICRO_USD),
                    round(key.budget_usd_monthly * MICRO_USD),
                    _month(now_ms // 1000),
                ],
            )
        except RedisError as exc:
            raise RedisUnavailable() from exc
        return Verdict(int(verdict)), int(wait_ms)

    async def usage(self, name: str, now_s: int) -> KeyUsage:
        keys = AccessKeys(name)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.usage)
            pipe.get(keys.spent)
            pipe.hgetall(keys.requests)
            pipe.hgetall(keys.tokens)
            pipe.hmget(keys.spent_usd, ["total", _month(now_s)])
            fields, spent, requests, tokens, (usd, usd_month) = await pipe.execute()
        total, models = UsageCounts(), dict[str, ModelUsage]()
        for field, amount in fields.items():
            metric, _, model = field.decode().partition(":")
            if metric in METRICS:
                total.add(metric, int(amount))
                models.setdefault(model, ModelUsage(model=model)).add(metric, int(amount))
        return KeyUsage(
            name=name,
            total=total,
            models=sorted(models.values(), key=lambda usage: usage.model),
            spent_tokens=int(spent or 0),
            spent_usd=int(usd or 0) / MICRO_USD,
            spent_usd_month=int(usd_month or 0) / MICRO_USD,
            requests_last_minute=_window_total(requests, now_s),
            tokens_last_minute=_window_total(tokens, now_s),
        )
