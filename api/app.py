"""The Litestar application factory for the API role."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router

from api import health, models
from api.access.keys import Access
from api.admin import admin_router
from api.chat import routes as chat
from api.console import console_routers, template_config
from api.delivery.queueing import Dispatcher
from api.delivery.relay import Relay
from api.draining import Drain
from api.errors import ErrorShape, exception_handlers, openai_shape
from api.intake.bodies import BodyBudget, body_guard
from api.intake.sessions import Sessions
from api.messages import routes as messages
from api.messages.errors import anthropic_shape
from api.metrics import metrics
from api.middleware import request_middleware
from api.openapi import openapi_config
from api.responses import routes as responses
from api.responses.store import ResponseStore
from api.state import GatewayState
from shared.catalog import Catalog
from shared.channel_store import ChannelStore
from shared.config import Settings
from shared.ledger.database import create_engine, database_url
from shared.ledger.queries import LedgerQueries
from shared.redis_client import redis_client
from shared.scripts import Scripts

__all__ = ("PUBLIC_PREFIXES", "create_app", "error_shape")

PUBLIC_PREFIXES = ("/v1", "/chaynsapi/v1")
"""Where the client-facing API is served: the OpenAI-style prefix, and the legacy one chayns clients use."""

_CHANNEL_POLL_S = 2.0
"""How soon a channel change made through another API instance is noticed here."""


def error_shape(path: str) -> ErrorShape:
    """In which protocol's shape an error answered before routing goes: Anthropic's on the Messages routes."""
    if any(path.startswith(f"{prefix}/messages") for prefix in PUBLIC_PREFIXES):
        return anthropic_shape
    return openai_shape


def create_app(settings: Settings, *, drain: Drain | None = None) -> Litestar:
    """The API; ``drain`` is the shutdown state the server sets on SIGTERM (a fresh one when not served)."""
    if not (settings.redis.url or settings.redis.sentinels):
        raise ValueError("the API needs redis.url (or REDIS_URL) or redis.sentinels")
    shutdown = drain or Drain()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = redis_client(settings.redis)
        relay = Relay(
            redis,
            instance_id=f"{socket.gethostname()}-{os.getpid()}",
            config=settings.relay,
            outage_grace_s=settings.redis.outage_grace_s,
            drain=shutdown,
        )
        await relay.start()
        dispatcher = Dispatcher(redis, relay, settings.relay)
        engine = create_engine(database_url(settings.database, settings.redis.data_dir))
        state = app.state.gateway = GatewayState(
            settings=settings,
            catalog=Catalog(settings.channels),
            redis=redis,
            dispatcher=dispatcher,
            relay=relay,
            responses=ResponseStore(redis, settings),
            sessions=Sessions(redis, Scripts(redis), settings, dispatcher),
            channels=ChannelStore(redis, settings.channels),
            access=Access(settings.access, redis, batcher=relay.batcher),
            ledger=LedgerQueries(engine),
            drain=shutdown,
        )
        follower = asyncio.create_task(state.channels.follow(state.apply_channels, interval_s=_CHANNEL_POLL_S))
        await dispatcher.check_workers()
        watcher = asyncio.create_task(dispatcher.watch_workers())
        try:
            yield
        finally:
            watcher.cancel()
            follower.cancel()
            await relay.stop()
            await redis.aclose()
            await engine.dispose()

    public = [*chat.HANDLERS, *responses.HANDLERS, *messages.HANDLERS, *models.HANDLERS]
    console = settings.admin.resolved_key() is not None
    return Litestar(
        route_handlers=[
            *([metrics] if settings.server.metrics else []),
            *health.HANDLERS,
            *(Router(prefix, route_handlers=public) for prefix in PUBLIC_PREFIXES),
            admin_router(),
            *(console_routers() if console else []),
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        middleware=[
            request_middleware,
            body_guard(
                BodyBudget(settings.server.max_body_bytes_in_flight), settings.server.max_body_bytes, error_shape
            ),
        ],
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=openapi_config(),
        template_config=template_config() if console else None,
        logging_config=None,
        debug=False,
    )
