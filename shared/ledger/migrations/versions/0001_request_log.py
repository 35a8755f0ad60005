"""The request log: one row per generation."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("key", sa.String(64)),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("channel", sa.String(128)),
        sa.Column("account", sa.String(128)),
        sa.Column("client", sa.String(256), nullable=False),
        sa.Column("session_id", sa.String(128)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(128)),
        sa.Column("error_message", sa.Text),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("total_ms", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("request_body", sa.Text),
        sa.Column("output", sa.Text),
    )
    op.create_index("ix_request_log_at", "request_log", ["at_ms"])
    op.create_index("ix_request_log_key_at", "request_log", ["key", "at_ms"])
    op.create_index("ix_request_log_model_at", "request_log", ["model", "at_ms"])
    op.create_index("ix_request_log_channel_at", "request_log", ["channel", "at_ms"])


def downgrade() -> None:
    op.drop_table("request_log")
