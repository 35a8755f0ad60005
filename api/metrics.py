"""The API process's Prometheus metrics and the ``/metrics`` route that serves them.

Each API instance reports its own figures; Prometheus sums them. The API processes of one ``aiapi up``
count as one instance: they share a directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus-client's
multiprocess mode) and ``/metrics`` on any of them reports the sum over all, the dead ones' counts
included. Workers serve theirs on their own port (``worker/metrics.py``). Labels are route templates,
status codes, error codes and API names, never anything a client chooses freely, so the series count
stays bounded.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError

from api.state import gateway_state
from shared.ledger.backlog import backlog

__all__ = (
    "ERRORS",
    "FIRST_OUTPUT_KEY",
    "GATE_REJECTIONS",
    "IN_FLIGHT",
    "LEDGER_BACKLOG",
    "LEDGER_BACKLOG_AGE",
    "QUEUE_WAIT",
    "REGISTRY",
    "REQUESTS",
    "REQUEST_DURATION",
    "TTFT",
    "exposition",
    "generations_in_flight",
    "metrics",
)

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "aiapi_http_requests",
    "HTTP requests answered, by route and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "aiapi_http_request_duration_seconds",
    "From a request's arrival to the end of its response body (whole streams included), by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
FIRST_OUTPUT_KEY = "aiapi.first_output"
"""Where a relayed stream notes, in the ASGI scope's state, when its first output left (for :data:`TTFT`):
only the stream knows which of its writes carry output, and which are its opening or keep-alives."""
TTFT = Histogram(
    "aiapi_time_to_first_token_seconds",
    "From a streaming request's arrival to the write of its first output (not the opening, not keep-alives).",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "aiapi_queue_wait_seconds",
    "From queueing a generation to a worker starting it.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "aiapi_generations_in_flight",
    "Generations this instance is relaying to a client now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
ERRORS = Counter(
    "aiapi_errors", "Errors answered to clients, by HTTP status and error code.", ["status", "code"], registry=REGISTRY
)
GATE_REJECTIONS = Counter(
    "aiapi_gate_rejections",
    "Requests refused (409) because their session already had a generation running.",
    registry=REGISTRY,
)
LEDGER_BACKLOG = Gauge(
    "aiapi_ledger_backlog_records",
    "Records in the ledger stream not yet in the database (read from Redis at each scrape).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
LEDGER_BACKLOG_AGE = Gauge(
    "aiapi_ledger_backlog_age_seconds",
    "How long the oldest record not yet in the database has waited (read from Redis at each scrape).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = gateway_state(request)
    if state.settings.ledger.enabled:
        # How far behind the recorder is, wherever it runs: read from Redis at each scrape.
        with contextlib.suppress(RedisError, OSError):
            behind = await backlog(state.redis)
            LEDGER_BACKLOG.set(behind.records)
            LEDGER_BACKLOG_AGE.set(behind.oldest_age_s)
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def generations_in_flight() -> int:
    """:data:`IN_FLIGHT`: this process's, or in multiprocess mode the sum over the live processes."""
    return int(_registry().get_sample_value("aiapi_generations_in_flight") or 0)


def exposition() -> bytes:
    """This process's figures, or in multiprocess mode those of every process sharing the directory."""
    return generate_latest(_registry())


def _registry() -> CollectorRegistry:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    return registry
