"""Writing records to the request log, idempotently: a record delivered twice is written once.

The generation id is the primary key, and the insert is SQLAlchemy's ``ON CONFLICT DO NOTHING`` (the
dialect constructs of SQLite and PostgreSQL, which render the same clause), so the recorder can
re-deliver a batch after a crash or a failed acknowledgement without duplicates or errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import String, Text, delete
from sqlalchemy.dialects import postgresql, sqlite

from shared.ledger.schema import request_log

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from shared.ledger.record import LedgerRecord

__all__ = ("delete_before", "write_records")


def _insert_or_ignore(dialect: str) -> sqlite.Insert | postgresql.Insert:
    insert = sqlite.insert(request_log) if dialect == "sqlite" else postgresql.insert(request_log)
    return insert.on_conflict_do_nothing(index_elements=["id"])


_LENGTHS = {
    column.name: column.type.length
    for column in request_log.columns
    if isinstance(column.type, String) and not isinstance(column.type, Text) and column.type.length
}
"""Bounded text columns: a longer value is cut, as PostgreSQL would refuse the whole batch over it and
the recorder would retry that batch forever."""


def _fitted(row: dict[str, Any]) -> dict[str, Any]:
    for name, length in _LENGTHS.items():
        value = row[name]
        if isinstance(value, str) and len(value) > length:
            row[name] = value[:length]
    return row


async def write_records(engine: AsyncEngine, records: Sequence[LedgerRecord]) -> int:
    """Insert ``records`` in one transaction, skipping ids already there; how many were new."""
    if not records:
        return 0
    insert = _insert_or_ignore(engine.dialect.name)
    rows = [_fitted(msgspec.structs.asdict(record)) for record in records]
    async with engine.begin() as connection:
        result = await connection.execute(insert.returning(request_log.c.id), rows)
        return len(result.all())


async def delete_before(engine: AsyncEngine, at_ms: int) -> int:
    """Delete rows older than ``at_ms`` (the retention); how many."""
    async with engine.begin() as connection:
        result = await connection.execute(delete(request_log).where(request_log.c.at_ms < at_ms))
        return int(result.rowcount)
