"""What the request handlers share in one API process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar import Request
    from redis.asyncio import Redis

    from api.dispatch import Dispatcher
    from api.relay import Relay
    from api.responses_store import ResponseStore
    from api.sessions import Sessions
    from shared.catalog import Catalog
    from shared.config import Settings

__all__ = ("GatewayState", "gateway_state")


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    catalog: Catalog
    redis: Redis
    dispatcher: Dispatcher
    relay: Relay
    responses: ResponseStore
    sessions: Sessions


def gateway_state(request: Request[Any, Any, Any]) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state
