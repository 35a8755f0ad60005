"""Access control: which API key a request bears, whether it may use the model, and within which limits.

In open mode (``[access] mode = "open"``, the default) :func:`admit` and :func:`authenticate` return at
once: nothing is checked and nothing costs a Redis call. In keys mode:

- A key is found by its SHA-256 digest: first among the config file's keys (in memory), then among the
  admin API's (one ``HGET``, remembered for ``[access] cache_s`` seconds, unknown digests too). So a key
  deleted, disabled or limited through the admin API is still honoured by other API processes for up to
  ``cache_s`` (5 s by default); the process that made the change forgets at once.
- Missing or unknown key → 401 ``invalid_api_key``; a model the key may not use → 403
  ``model_not_allowed``; budget spent → 429 ``insufficient_quota``; over rpm or tpm → 429
  ``rate_limit_exceeded`` with ``Retry-After`` (see :mod:`api.access_store` for the windows). tpm is
  checked before a request (its own tokens are not known yet) and charged when it ends, so one big
  generation may overshoot; the key then waits until the window slides back under its limit.
- Usage is accounted per key and model where the generation's events pass: :func:`admit` leaves a grant
  in a context variable, and the handler's :class:`api.streaming.Relayed` takes it through
  :func:`metered`, which watches the events and records the request, whether it failed or was cancelled
  part-way, and the last ``Usage`` reported, when the relay is finished.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from api.access_store import KeyStore, Verdict
from api.state import gateway_state
from shared.access_config import AccessConfig, KeyPolicy, key_digest
from shared.errors import AuthenticationFailed, PermissionDenied, RateLimited
from shared.events import Finished, GenerationEvent, Usage

if TYPE_CHECKING:
    from litestar import Request
    from litestar.connection import ASGIConnection
    from redis.asyncio import Redis

__all__ = ("Access", "access_for", "admit", "authenticate", "metered")

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000
"""Digests remembered at most; beyond that the cache starts over (it only saves Redis calls)."""


class _RequestedModel(msgspec.Struct):
    model: str | None = None


_model_decoder = msgspec.json.Decoder(_RequestedModel)


@dataclass(frozen=True, slots=True)
class _Grant:
    """One admitted request: whose usage the generation it starts counts as."""

    store: KeyStore
    key: str
    model: str


_grant: contextvars.ContextVar[_Grant | None] = contextvars.ContextVar("aiapi_access_grant", default=None)
_settling: set[asyncio.Future[None]] = set()
"""Usage records being written: referenced until done, so that none is garbage-collected midway."""


class Access:
    """The keys one API process knows: the config's, and a short-lived cache of the admin API's."""

    def __init__(self, config: AccessConfig, redis: Redis) -> None:
        self.config = config
        self.store = KeyStore(redis)
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

    async def limit(self, key: KeyPolicy) -> None:
        """Count the request against the key's limits, or raise 429 if one is reached."""
        if not (key.rpm or key.tpm or key.budget_tokens):
            return
        verdict, wait_ms = await self.store.admit(key, int(time.time() * 1000))
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


def access_for(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    return gateway_state(connection).access


def _keys_mode(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return gateway_state(connection).settings.access.mode == "keys"


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """In keys mode, require a valid key (for requests that start no generation)."""
    if _keys_mode(connection):
        await access_for(connection).authenticate(connection)


async def admit(request: Request[Any, Any, Any]) -> None:
    """In keys mode, require a valid key allowed the requested model and within its limits.

    The model is read from the body; a body that does not even name one is left for the handler to
    reject with 400.
    """
    if not _keys_mode(request):
        return
    access = access_for(request)
    key = await access.authenticate(request)
    try:
        model = _model_decoder.decode(await request.body()).model
    except msgspec.DecodeError:
        model = None
    if model is not None and key.models and model not in key.models:
        raise PermissionDenied(
            f"This API key may not use the model '{model}'.", code="model_not_allowed", param="model"
        )
    await access.limit(key)
    _grant.set(_Grant(access.store, key.name, model or ""))


def metered(
    events: AsyncGenerator[GenerationEvent | None, None],
) -> AsyncGenerator[GenerationEvent | None, None]:
    """``events``, accounted to the key admitted for this request if there is one (once per admission)."""
    grant = _grant.get()
    if grant is None:
        return events
    _grant.set(None)
    return _account(events, grant)


async def _account(
    events: AsyncGenerator[GenerationEvent | None, None], grant: _Grant
) -> AsyncGenerator[GenerationEvent | None, None]:
    usage: Usage | None = None
    finished = False
    try:
        async for event in events:
            if isinstance(event, Usage):
                usage = event
            finished = finished or isinstance(event, Finished)
            yield event
    finally:
        # A client that left cancels the task relaying its stream, and every await here with it: settle in
        # a task of its own, which the cancellation cannot interrupt.
        settling = asyncio.ensure_future(_settle(events, grant, usage, failed=not finished))
        _settling.add(settling)
        settling.add_done_callback(_settling.discard)
        await asyncio.shield(settling)


async def _settle(
    events: AsyncGenerator[GenerationEvent | None, None], grant: _Grant, usage: Usage | None, *, failed: bool
) -> None:
    await grant.store.record(grant.key, grant.model, usage, failed=failed, now_s=int(time.time()))
    await events.aclose()
