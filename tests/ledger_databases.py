"""Ledger databases for tests: a SQLite file, or a throwaway database in the local PostgreSQL.

PostgreSQL is the one running on this machine (127.0.0.1:5432, trust auth, database ``test``; override
with ``AIAPI_TEST_POSTGRES``). Each use gets a database of its own, dropped afterwards, so parallel runs do
not clash; tests asking for it are skipped with a message when the server is not reachable.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.ledger.database import create_engine
from shared.ledger.migrate import migrate

__all__ = ("POSTGRES_URL", "ledger_engine", "postgres_database")

POSTGRES_URL = os.environ.get("AIAPI_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database on the test server, dropped afterwards: its URL."""
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    server = make_url(POSTGRES_URL)
    try:
        admin = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(hide_password=False))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def ledger_engine(kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated ledger database of ``kind`` (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        engine = create_engine(make_url(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"))
        try:
            await migrate(engine)
            yield engine
        finally:
            await engine.dispose()
        return
    async with postgres_database() as url:
        engine = create_engine(make_url(url))
        try:
            await migrate(engine)
            yield engine
        finally:
            await engine.dispose()
