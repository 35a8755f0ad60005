"""The recorder's Prometheus metrics, served by ``aiapi recorder`` on ``[ledger] metrics_port``. The API
serves the backlog too (``api/metrics.py``, read from Redis at each scrape), so how far behind the
recorder is shows wherever the recorder runs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ("BACKLOG", "BACKLOG_AGE", "REGISTRY", "WRITES", "WRITE_FAILURES")

REGISTRY = CollectorRegistry(auto_describe=True)

BACKLOG = Gauge(
    "aiapi_ledger_backlog_records", "Records in the ledger stream not yet in the database.", registry=REGISTRY
)
BACKLOG_AGE = Gauge(
    "aiapi_ledger_backlog_age_seconds",
    "How long the oldest record not yet in the database has waited.",
    registry=REGISTRY,
)
WRITES = Counter("aiapi_ledger_records_written", "Records written to the database (new ones).", registry=REGISTRY)
WRITE_FAILURES = Counter(
    "aiapi_ledger_write_failures", "Batches the database refused or did not answer; retried.", registry=REGISTRY
)
