"""The one way a front door hands a generation to the workers.

Every front door (Chat Completions, Responses, Messages) decodes its own body into a
:class:`~shared.generation.GenerationRequest`; from there the sequence is the same, so it lives here:
the catalog check, the ``[limits]``, the key's charge, the session's execution gate, and the submit,
giving the gate back if the generation never reaches the queue. The caller then collects or streams
what the returned :class:`~api.delivery.streaming.Relayed` delivers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from api.access.admission import charged
from api.access.identity import client_identity
from api.delivery.streaming import Relayed
from api.intake.limits import check_limits
from api.intake.sessions import concurrency_policy
from api.state import gateway_state
from shared.errors import ModelNotFound

if TYPE_CHECKING:
    from litestar import Request

    from api.access.admission import Admission
    from shared.generation import GenerationRequest

__all__ = ("Gated", "check_model", "submit")

Gated = Callable[["GenerationRequest"], Awaitable[None]]
"""Runs once the generation holds its session's gate, before it is queued (a stored response's record)."""


def check_model(request: Request[Any, Any, Any], model: str) -> None:
    """404 for a model no channel serves, before any other work is done for the request."""
    if model not in gateway_state(request).catalog:
        raise ModelNotFound(model)


@overload
async def submit(
    request: Request[Any, Any, Any],
    admission: Admission | None,
    generation: GenerationRequest,
    *,
    listen: Literal[True] = True,
    queue_timeout_s: float | None = None,
    messages_param: str = "messages",
    inherited_session: str | None = None,
    gated: Gated | None = None,
) -> Relayed: ...


@overload
async def submit(
    request: Request[Any, Any, Any],
    admission: Admission | None,
    generation: GenerationRequest,
    *,
    listen: Literal[False],
    queue_timeout_s: float | None = None,
    messages_param: str = "messages",
    inherited_session: str | None = None,
    gated: Gated | None = None,
) -> None: ...


async def submit(
    request: Request[Any, Any, Any],
    admission: Admission | None,
    generation: GenerationRequest,
    *,
    listen: bool = True,
    queue_timeout_s: float | None = None,
    messages_param: str = "messages",
    inherited_session: str | None = None,
    gated: Gated | None = None,
) -> Relayed | None:
    """Queue ``generation`` for ``request`` and return its relay; with ``listen=False`` (background work
    nobody follows) just queue it.

    ``queue_timeout_s`` defaults to ``relay.queue_timeout_s``; ``inherited_session`` is the session of a
    stored response the request continues.
    """
    state = gateway_state(request)
    check_model(request, generation.model)
    check_limits(generation, state.settings.limits, messages_param=messages_param)
    policy = concurrency_policy(request.headers)
    timeout = state.settings.relay.queue_timeout_s if queue_timeout_s is None else queue_timeout_s
    async with charged(admission) as generation.billing:
        generation = await state.sessions.enter(
            generation,
            policy=policy,
            owner=client_identity(request),
            queue_timeout_s=timeout,
            inherited=inherited_session,
        )
        try:
            if gated is not None:
                await gated(generation)
            if not listen:
                await state.dispatcher.enqueue(generation, queue_timeout_s=timeout)
                return None
            subscription = await state.dispatcher.submit(generation, queue_timeout_s=timeout)
        except BaseException:
            await state.sessions.leave(generation)
            raise
    return Relayed(subscription, state.dispatcher, detached=generation.detached)
