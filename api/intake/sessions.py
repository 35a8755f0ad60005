"""Finding a request's conversation and admitting it through the session's execution gate.

The gate is a Redis key per session naming the one generation allowed to run there, with a TTL that
the worker running it keeps renewing (and releases at the end), so a dead worker frees it by itself.
A second request either gets 409 ``concurrent_request`` before any byte is sent, or, with the
``cancel_previous`` policy, takes the gate over and cancels the run it displaced. Each admission
increments the session's fencing counter; the run carries its token in :class:`SessionRef`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import msgspec
from redis.exceptions import RedisError

from api.metrics import GATE_REJECTIONS
from shared import keys
from shared.errors import Conflict, InvalidRequest, RedisUnavailable
from shared.generation import GenerationRequest, Message, SessionRef
from shared.sessions import decode_zero_width, history_key, new_session_id, strip_messages, turn_fingerprint

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from api.delivery.queueing import Dispatcher
    from shared.config import Settings
    from shared.scripts import Scripts

__all__ = ("CONCURRENCY_HEADER", "Policy", "Sessions", "concurrency_policy")

CONCURRENCY_HEADER = "x-aiapi-concurrency"
Policy = Literal["reject", "cancel_previous", "allow"]
_POLICIES: tuple[Policy, ...] = ("reject", "cancel_previous", "allow")


def concurrency_policy(headers: Mapping[str, str]) -> Policy | None:
    """The policy the client asked for in ``x-aiapi-concurrency`` (``None``: the configured one)."""
    asked = headers.get(CONCURRENCY_HEADER)
    if asked is None:
        return None
    for policy in _POLICIES:
        if asked == policy:
            return policy
    raise InvalidRequest(f"{CONCURRENCY_HEADER} must be one of {', '.join(_POLICIES)}.", param=CONCURRENCY_HEADER)


class Sessions:
    def __init__(self, redis: Redis, scripts: Scripts, settings: Settings, dispatcher: Dispatcher) -> None:
        self._redis = redis
        self._scripts = scripts
        self._settings = settings
        self._dispatcher = dispatcher

    async def enter(
        self,
        generation: GenerationRequest,
        *,
        policy: Policy | None,
        owner: str,
        queue_timeout_s: float,
        inherited: str | None = None,
    ) -> GenerationRequest:
        """``generation`` with its session resolved and admitted, and zero-width markers stripped.

        ``policy`` is the client's (see :func:`concurrency_policy`), ``None`` for the configured one.
        ``inherited`` is the session of a stored response this request continues; it takes precedence.
        """
        policy = policy or self._settings.sessions.concurrency
        session_id, messages = await self._resolve(owner, generation.messages, inherited)
        hold_s = queue_timeout_s + self._settings.worker.lease_ttl_s
        # A new session's id is known to nobody until its first reply exists: nothing can collide with it.
        fresh = session_id is None
        if session_id is None:
            session_id = new_session_id()
        fence = 0 if fresh or policy == "allow" else await self._admit(owner, session_id, generation.id, policy, hold_s)
        zero_width = self._settings.sessions.mode == "zero_width"
        return msgspec.structs.replace(
            generation, messages=messages, session=SessionRef(session_id, fence, owner, zero_width)
        )

    async def leave(self, generation: GenerationRequest) -> None:
        """Give the gate back for a generation that will never reach a worker.

        Called while an error is on its way to the client, often because Redis is unreachable: then the
        gate expires by itself, and the client must still get that error rather than this one.
        """
        session = generation.session
        if session is not None and session.fence:
            with contextlib.suppress(RedisError):
                gate = keys.SessionKeys(session.owner, session.id).gate
                await self._scripts.release(keys=[gate], args=[generation.id])

    async def _resolve(
        self, owner: str, messages: list[Message], inherited: str | None
    ) -> tuple[str | None, list[Message]]:
        """The session the messages continue (``None``: a new conversation), and the messages stripped."""
        if self._settings.sessions.mode == "zero_width":
            found = inherited or next(
                (sid for m in reversed(messages) if m.role == "assistant" and (sid := decode_zero_width(m.text()))),
                None,
            )
            return found, strip_messages(messages)
        cleaned = strip_messages(messages)
        if inherited:
            return inherited, cleaned
        last = next((i for i in range(len(cleaned) - 1, 0, -1) if cleaned[i].role == "assistant"), None)
        if last is None:
            return None, cleaned
        binding = keys.binding_key(owner, turn_fingerprint(cleaned[last - 1], cleaned[last]))
        try:
            bound = await self._redis.get(binding)
        except RedisError as exc:
            raise RedisUnavailable() from exc
        return (bound.decode() if bound else history_key(owner, cleaned[: last + 1])), cleaned

    async def _admit(self, owner: str, session_id: str, generation_id: str, policy: Policy, hold_s: float) -> int:
        session_keys = keys.SessionKeys(owner, session_id)
        mode = "reject" if policy == "reject" else "takeover"
        ttl_ms = self._settings.sessions.ttl_s * 1000
        try:
            fence, previous = await self._scripts.admit(
                keys=[session_keys.gate, session_keys.fence], args=[generation_id, int(hold_s * 1000), mode, ttl_ms]
            )
        except RedisError as exc:
            raise RedisUnavailable() from exc
        if not fence:
            GATE_REJECTIONS.inc()
            raise Conflict(
                "Another request is already running in this conversation; retry when it has finished.",
                code="concurrent_request",
            )
        if previous and previous.decode() != generation_id:
            await self._dispatcher.cancel(previous.decode())
        return int(fence)
