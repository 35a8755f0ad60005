"""The keys one API process knows, and the per-key limits a request is counted against.

A key is found by its SHA-256 digest: first among the config file's keys (in memory), then among the
admin API's (one ``HGET``, remembered for ``[access] cache_s`` seconds, unknown digests too). So a key
deleted, disabled or limited through the admin API is still honoured by other API processes for up to
``cache_s`` (5 s by default); the process that made the change forgets at once.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from api.access.identity import presented_key
from api.access.store import KeyStore, Verdict
from shared.access_config import AccessConfig, KeyPolicy, key_digest
from shared.errors import AuthenticationFailed, RateLimited
from shared.usage import Billing, UsageLedger, estimate_tokens

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from redis.asyncio import Redis

    from shared.batching import RedisBatcher

__all__ = ("Access",)

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000
"""Digests remembered at most; beyond that the cache starts over (it only saves Redis calls)."""


class Access:
    """The keys one API process knows: the config's, and a short-lived cache of the admin API's."""

    def __init__(self, config: AccessConfig, redis: Redis, *, batcher: RedisBatcher | None = None) -> None:
        self.config = config
        self.store = KeyStore(redis, batcher=batcher)
        self.ledger = UsageLedger(redis)
        self._configured: dict[str, KeyPolicy] = {}
        self.configured_names = {key.name for key in config.keys}
        for key in config.keys:
            digest = key.digest()
            if digest is None:
                log.warning("access key %s: its variable %s is unset, so it cannot be used", key.name, key.key_env)
            else:
                self._configured[digest] = key
        self._cache: dict[str, tuple[float, KeyPolicy | None]] = {}

    async def key(self, token: str) -> KeyPolicy | None:
        """The enabled key whose secret is ``token``, or ``None``."""
        digest = key_digest(token)
        found = self._configured.get(digest)
        if found is None:
            now = time.monotonic()
            expires, found = self._cache.get(digest, (0.0, None))
            if expires <= now:
                found = await self.store.lookup(digest)
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[digest] = (now + self.config.cache_s, found)
        return found if found is not None and found.enabled else None

    def forget(self) -> None:
        """Drop what was cached about admin-created keys (after this process changed one)."""
        self._cache.clear()

    async def authenticate(self, connection: ASGIConnection[Any, Any, Any, Any]) -> KeyPolicy:
        token = presented_key(connection.headers)
        if token is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>' "
                "or in the x-api-key header."
            )
        key = await self.key(token)
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return key

    async def limit(self, key: KeyPolicy, model: str, body_bytes: int) -> Billing:
        """Count the request against the key's limits, or raise 429 if one is reached."""
        now_ms = int(time.time() * 1000)
        if not (key.rpm or key.tpm or key.budget_tokens or key.budget_usd or key.budget_usd_monthly):
            return Billing(key.name, model)
        reserve = estimate_tokens(body_bytes) if key.tpm or key.budget_tokens else 0
        verdict, wait_ms = await self.store.admit(key, now_ms, reserve)
        wait_s = float(max(1, math.ceil(wait_ms / 1000)))
        if verdict is Verdict.BUDGET:
            raise RateLimited(
                f"The key '{key.name}' has used its budget of {key.budget_tokens} tokens.", code="insufficient_quota"
            )
        if verdict is Verdict.BUDGET_USD:
            raise RateLimited(
                f"The key '{key.name}' has used its budget of ${key.budget_usd:g}.", code="insufficient_quota"
            )
        if verdict is Verdict.BUDGET_USD_MONTHLY:
            raise RateLimited(
                f"The key '{key.name}' has used its monthly budget of ${key.budget_usd_monthly:g}.",
                code="insufficient_quota",
            )
        if verdict is Verdict.TPM:
            raise RateLimited(
                f"Rate limit reached for key '{key.name}' on tokens per minute: limit {key.tpm}. "
                f"Please try again in {wait_s:g}s.",
                retry_after=wait_s,
            )
        if verdict is Verdict.RPM:
            raise RateLimited(
                f"Rate limit reached for key '{key.name}' on requests per minute: limit {key.rpm}. "
                f"Please try again in {wait_s:g}s.",
                retry_after=wait_s,
            )
        return Billing(key.name, model, reserved_tokens=reserve, reserved_at=now_ms // 1000)
