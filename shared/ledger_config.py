"""``[database]``, ``[ledger]`` and ``[prices]``: where the request log lasts, what it keeps, what tokens cost.

[database]
url = "postgresql://aiapi@db/aiapi"   # or DATABASE_URL; default: SQLite in the embedded Redis's folder

[ledger]
store_bodies = false                  # keep each request's messages and its output text
max_body_bytes = 65536                # cut each stored body at this size
retention_days = 90                   # rows older than this are deleted by the recorder; 0: keep all

[prices."gpt-4o-mini"]                # USD per million tokens
input = 0.15
output = 0.60
cached_input = 0.075
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ("DatabaseConfig", "LedgerConfig", "Price", "Usd")

Usd = Annotated[float, msgspec.Meta(ge=0)]
"""A price or a budget in US dollars: never negative."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class DatabaseConfig(_Section, frozen=True, kw_only=True):
    url: str | None = None
    """A SQLAlchemy URL (``postgresql://…`` or ``sqlite:///path``); the async driver is chosen for it.
    ``None``: SQLite in ``redis.data_dir`` (``ledger.db``)."""


class LedgerConfig(_Section, frozen=True, kw_only=True):
    enabled: bool = True
    """Workers append a record per generation to the ledger stream, and ``aiapi up`` runs the recorder."""
    store_bodies: bool = False
    max_body_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024
    retention_days: Annotated[int, msgspec.Meta(ge=0)] = 90
    stream_max_len: Annotated[int, msgspec.Meta(ge=1000)] = 1_000_000
    """The ledger stream is trimmed to about this many records: how far a recorder may fall behind
    (an outage of the database, a recorder down) before the oldest records are lost."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    """Records the recorder writes per transaction at most."""
    flush_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    """After a batch smaller than ``batch_size``, the recorder waits this long for more: at low traffic
    a transaction carries many records instead of one, and the recorder's CPU stays low."""
    claim_idle_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A record read by a recorder that has been quiet this long is taken over by another."""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    """``aiapi recorder`` serves its Prometheus metrics on this port (0: off)."""


class Price(_Section, frozen=True, kw_only=True):
    """USD per million tokens of one model (the name the client asks for)."""

    input: Usd = 0.0
    output: Usd = 0.0
    cached_input: Usd | None = None
    """Cached input tokens; ``None``: the input price."""

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
        """The cost in USD; ``cached_tokens`` is part of ``input_tokens``."""
        cached = min(cached_tokens, input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        micro = (input_tokens - cached) * self.input + cached * cached_price + output_tokens * self.output
        return micro / 1_000_000
