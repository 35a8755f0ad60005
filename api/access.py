"""Access control: which API key a request bears, whether it may use the model, and within which limits.

In open mode (``[access] mode = "open"``, the default) :func:`admit` and :func:`authenticate` return at
once: nothing is checked and nothing costs a Redis call. In keys mode:

- A key is found by its SHA-256 digest: first among the config file's keys (in memory), then among the
  admin API's (one ``HGET``, remembered for ``[access] cache_s`` seconds, unknown digests too). So a key
  deleted, disabled or limited through the admin API is still honoured by other API processes for up to
  ``cache_s`` (5 s by default); the process that made the change forgets at once.
- Missing or unknown key → 401 ``invalid_api_key``; a model the key may not use → 403
  ``model_not_allowed``; budget spent → 429 ``insufficient_quota``; over rpm or tpm → 429
  ``rate_limit_exceeded`` with ``Retry-After`` (see :mod:`api.access_store` for the windows). tpm and
  the budget are charged on admission with an estimate of the prompt (a quarter of the body's bytes), and
  settled with the real figures when the generation ends; only the output can overshoot a limit.
- Usage is accounted per key and model by the worker that runs the generation (:mod:`shared.usage`), so
  cancelled, failed and unwatched background generations count too: :meth:`Admission.charge` returns
  the :class:`~shared.usage.Billing` the handler puts into the generation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from api.access_store import KeyStore, Verdict
from api.state import gateway_state
from shared.access_config import AccessConfig, KeyPolicy, key_digest
from shared.errors import AuthenticationFailed, PermissionDenied, RateLimited
from shared.usage import Billing, UsageLedger, estimate_tokens

if TYPE_CHECKING:
    from litestar import Request
    from litestar.connection import ASGIConnection
    from redis.asyncio import Redis

__all__ = ("Access", "Admission", "access_for", "admit", "authenticate", "charged")

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000
"""Digests remembered at most; beyond that the cache starts over (it only saves Redis calls)."""


class _RequestedModel(msgspec.Struct):
    model: str | None = None


_model_decoder = msgspec.json.Decoder(_RequestedModel)


class Access:
    """The keys one API process knows: the config's, and a short-lived cache of the admin API's."""

    def __init__(self, config: AccessConfig, redis: Redis) -> None:
        self.config = config
        self.store = KeyStore(redis)
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
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'."
            )
        key = await self.key(token)
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return key

    async def limit(self, key: KeyPolicy, model: str, body_bytes: int) -> Billing:
        """Count the request against the key's limits, or raise 429 if one is reached."""
        now_ms = int(time.time() * 1000)
        if not (key.rpm or key.tpm or key.budget_tokens):
            return Billing(key.name, model)
        reserve = estimate_tokens(body_bytes) if key.tpm or key.budget_tokens else 0
        verdict, wait_ms = await self.store.admit(key, now_ms, reserve)
        wait_s = float(max(1, math.ceil(wait_ms / 1000)))
        if verdict is Verdict.BUDGET:
            raise RateLimited(
                f"The key '{key.name}' has used its budget of {key.budget_tokens} tokens.", code="insufficient_quota"
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


def access_for(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    return gateway_state(connection).access


def _keys_mode(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return gateway_state(connection).settings.access.mode == "keys"


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> KeyPolicy | None:
    """In keys mode, require a valid key (for requests that start no generation) and return it."""
    if _keys_mode(connection):
        return await access_for(connection).authenticate(connection)
    return None


@dataclass(frozen=True, slots=True)
class Admission:
    """A request whose key may use its model; :meth:`charge` it once it is known to be valid."""

    access: Access
    key: KeyPolicy
    model: str
    body_bytes: int

    async def charge(self) -> Billing:
        """Count the request against the key's limits (429 if one is reached); whom the generation bills."""
        return await self.access.limit(self.key, self.model, self.body_bytes)


@contextlib.asynccontextmanager
async def charged(admission: Admission | None) -> AsyncIterator[Billing | None]:
    """Charge ``admission`` (``None`` in open mode: nothing to charge) for the block that queues its
    generation; if the block fails, the generation never runs and its token reservation is given back."""
    if admission is None:
        yield None
        return
    billing = await admission.charge()
    try:
        yield billing
    except BaseException:
        await admission.access.ledger.release(billing, now_s=int(time.time()))
        raise


async def admit(request: Request[Any, Any, Any]) -> Admission | None:
    """In keys mode, require a valid key allowed the requested model (``None`` in open mode).

    The model is read from the body; a body that does not even name one is left for the handler to
    reject with 400. Limits are checked by :meth:`Admission.charge`, after the request proved valid, so
    a malformed request does not use up the key's quota.
    """
    if not _keys_mode(request):
        return None
    access = access_for(request)
    key = await access.authenticate(request)
    body = await request.body()
    try:
        model = _model_decoder.decode(body).model
    except msgspec.DecodeError:
        model = None
    if model is not None and key.models and model not in key.models:
        raise PermissionDenied(
            f"This API key may not use the model '{model}'.", code="model_not_allowed", param="model"
        )
    return Admission(access, key, model or "", len(body))
