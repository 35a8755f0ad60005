"""The ledger's processes: ``aiapi recorder`` (drain the stream into the database) and ``aiapi migrate``.

The recorder migrates the schema at start, under a Redis lock, so a fresh database needs no separate
step; ``aiapi migrate`` is for operators who migrate before they roll out. A recorder stops cleanly on
SIGTERM or SIGINT: what it has read but not written stays pending and is taken over by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from shared.ledger.database import create_engine, database_url
from shared.ledger.metrics import REGISTRY
from shared.ledger.migrate import migrate, migrate_locked
from shared.ledger.recorder import Recorder
from shared.redis_client import redis_client

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = ("run_migrate", "run_recorder", "serve_recorder")

log = logging.getLogger(__name__)

_RETRY_S = 2.0


async def serve_recorder(settings: Settings) -> None:
    """Migrate (once Redis and the database answer), then record until cancelled."""
    redis = redis_client(settings.redis)
    engine = create_engine(database_url(settings.database, settings.redis.data_dir))
    try:
        while True:
            try:
                await migrate_locked(engine, redis)
                break
            except (RedisError, SQLAlchemyError, OSError) as exc:
                log.warning("recorder: cannot migrate the ledger yet (%s); retrying in %.0f s", exc, _RETRY_S)
                await asyncio.sleep(_RETRY_S)
        recorder = Recorder(
            redis,
            engine,
            settings.ledger,
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            claim_idle_s=settings.ledger.claim_idle_s,
            flush_interval_s=settings.ledger.flush_interval_s,
        )
        await recorder.run()
    finally:
        await redis.aclose()
        await engine.dispose()


def run_recorder(settings: Settings) -> None:
    if settings.ledger.metrics_port:
        start_http_server(settings.ledger.metrics_port, addr=settings.server.host, registry=REGISTRY)

    async def main() -> None:
        task = asyncio.create_task(serve_recorder(settings))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def run_migrate(settings: Settings) -> None:
    """Bring the database's schema up to date, now (``aiapi migrate``)."""

    async def main() -> None:
        engine = create_engine(database_url(settings.database, settings.redis.data_dir))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
