"""The ledger's SQL schema, as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

Times are integer unix milliseconds, so filtering and grouping by hour or day is integer arithmetic that
both databases do alike. Migrations (``shared/ledger/migrations``) create and change these tables; the
definition here is what queries are written against and what a migration is checked against.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

__all__ = ("metadata", "request_log")

metadata = MetaData()

request_log = Table(
    "request_log",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("key", String(64)),
    Column("model", String(256), nullable=False),
    Column("channel", String(128)),
    Column("account", String(128)),
    Column("client", String(256), nullable=False, default=""),
    Column("session_id", String(128)),
    Column("outcome", String(32), nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(128)),
    Column("error_message", Text),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("total_ms", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("request_body", Text),
    Column("output", Text),
    Index("ix_request_log_at", "at_ms"),
    Index("ix_request_log_key_at", "key", "at_ms"),
    Index("ix_request_log_model_at", "model", "at_ms"),
    Index("ix_request_log_channel_at", "channel", "at_ms"),
)
