"""Bringing the ledger's schema up to date: Alembic, run from code on the ledger's own engine.

``aiapi migrate`` runs it on its own; ``aiapi up`` and ``aiapi recorder`` run it at start under a Redis
lock (:data:`shared.keys.LEDGER_MIGRATION_LOCK`), so that several starting at once migrate once and the
others wait for it. An up-to-date schema makes it a no-op.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

from shared.keys import LEDGER_MIGRATION_LOCK

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ("migrate", "migrate_locked")

log = logging.getLogger(__name__)

_SCRIPTS = Path(__file__).parent / "migrations"
_LOCK_TIMEOUT_S = 120


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Apply every migration the database has not had yet."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
    log.info("ledger schema up to date (%s)", engine.url.render_as_string(hide_password=True))


async def migrate_locked(engine: AsyncEngine, redis: Redis) -> None:
    """:func:`migrate`, one process at a time across the deployment."""
    async with redis.lock(LEDGER_MIGRATION_LOCK, timeout=_LOCK_TIMEOUT_S, blocking_timeout=_LOCK_TIMEOUT_S):
        await migrate(engine)
