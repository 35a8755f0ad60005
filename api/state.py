"""What the request handlers share in one API process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.catalog import Catalog

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from redis.asyncio import Redis

    from api.access.keys import Access
    from api.delivery.queueing import Dispatcher
    from api.delivery.relay import Relay
    from api.draining import Drain
    from api.intake.sessions import Sessions
    from api.responses.store import ResponseStore
    from shared.channel_store import ChannelStore
    from shared.config import ChannelConfig, Settings
    from shared.ledger.queries import LedgerQueries

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
    channels: ChannelStore
    access: Access
    ledger: LedgerQueries
    """The request log and usage reports (the database the recorder writes)."""
    drain: Drain

    async def apply_channels(self, channels: list[ChannelConfig]) -> None:
        self.catalog = Catalog(channels)

    async def reload_channels(self) -> None:
        """Take stored channel changes into account now (after this process made one)."""
        await self.apply_channels(await self.channels.effective())


def gateway_state(request: ASGIConnection[Any, Any, Any, Any]) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state
