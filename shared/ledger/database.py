"""The ledger's database: its URL from the configuration, and the async engine every role uses.

One code path for both databases: SQLAlchemy Core on an async driver, ``aiosqlite`` for SQLite (the
embedded default, a file next to the embedded Redis's data) and ``asyncpg`` for PostgreSQL. An URL is
given as operators write it (``postgresql://…``); the async driver is put in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from shared.ledger_config import DatabaseConfig

__all__ = ("DATABASE_FILE", "create_engine", "database_url")

DATABASE_FILE = "ledger.db"
"""The SQLite file's name in the data folder, when no URL is configured."""
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def database_url(config: DatabaseConfig, data_dir: str) -> URL:
    """The URL to connect to, with its async driver; ``ValueError`` naming what is wrong with it."""
    if config.url is None:
        return make_url(f"sqlite+aiosqlite:///{Path(data_dir) / DATABASE_FILE}")
    try:
        url = make_url(config.url)
    except (ArgumentError, ValueError):
        raise ValueError(f"database url {_masked(config.url)!r} is not a database URL") from None
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise ValueError(f"database url: unsupported database {backend!r} (use postgresql:// or sqlite:///)")
    if backend == "sqlite" and not url.database:
        raise ValueError("database url: a sqlite URL needs a file path (sqlite:///path/to/ledger.db)")
    if backend != "sqlite" and not url.host:
        raise ValueError("database url: a postgresql URL needs a host (postgresql://user@host/database)")
    return url.set(drivername=_DRIVERS[backend])


def _masked(url: str) -> str:
    """``url`` without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def create_engine(url: URL) -> AsyncEngine:
    """An engine for ``url``; a SQLite file is created with its folder, and written in WAL mode so the
    API's reads and the recorder's writes do not block each other."""
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
