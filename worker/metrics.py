"""A worker's Prometheus metrics, served on ``worker.metrics_port`` when it is set.

Every worker process exposes its own figures (Prometheus sums them across instances), so nothing here
costs a Redis call. Label values come from small fixed sets: provider types, error codes, outcomes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = (
    "GENERATIONS",
    "IN_FLIGHT",
    "REGISTRY",
    "TOKENS",
    "TOOLBRIDGE",
    "UPSTREAM_ERRORS",
    "UPSTREAM_LATENCY",
    "serve_metrics",
)

REGISTRY = CollectorRegistry(auto_describe=True)

GENERATIONS = Counter(
    "aiapi_worker_generations",
    "Generations run by this worker, by how they ended (completed, failed, cancelled, superseded, orphaned, …).",
    ["outcome"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("aiapi_worker_generations_in_flight", "Generations running on this worker now.", registry=REGISTRY)
UPSTREAM_ERRORS = Counter(
    "aiapi_upstream_errors",
    "Failed upstream attempts, by provider type and error code (rate_limited, upstream_timeout, ...).",
    ["provider", "kind"],
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "aiapi_upstream_first_output_seconds",
    "From sending an upstream request to its first output, by provider type.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
TOKENS = Counter(
    "aiapi_tokens", "Tokens of the generations run here, by kind (input, output, cached).", ["kind"], registry=REGISTRY
)
TOOLBRIDGE = Counter(
    "aiapi_toolbridge_events",
    "Text-bridge outcomes, as the original gateway counted them: xml_not_found, validation_filtered, "
    "fallback_applied, strict_client_rule_applied, forced_toolcall_generated.",
    ["outcome"],
    registry=REGISTRY,
)


def serve_metrics(port: int, host: str) -> None:
    """Serve :data:`REGISTRY` over HTTP from a background thread: the worker has no web server otherwise."""
    start_http_server(port, addr=host, registry=REGISTRY)
