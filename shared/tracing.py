"""OpenTelemetry traces of a request's whole path, optional and free when off.

One trace per request: the API's request span (a child of the client's W3C ``traceparent`` when it sent
one), the queue wait and the relay in the API, the worker's claim and generation, and each upstream
attempt, whose ``traceparent`` goes to the upstream as a header. The API hands the trace to the worker in
:attr:`GenerationRequest.traceparent`. Attributes follow the GenAI semantic conventions.

Tracing is on when ``[tracing] otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, and needs the
``otel`` extra (``pip install aiapi[otel]``). Off, nothing of OpenTelemetry is imported and each hook
costs one attribute check (:attr:`Tracing.enabled`). Like logging, it is configured once per process at
start (:meth:`Tracing.configure`), so the hooks reach it without threading a tracer through every constructor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from shared.config import TracingConfig

__all__ = ("AttributeValue", "Kind", "Tracing", "tracing")

log = logging.getLogger(__name__)

Kind = Literal["internal", "server", "client", "producer", "consumer"]
AttributeValue = str | int | float | bool | tuple[str, ...]

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Tracing:
    """The process's tracer. Every method but :meth:`configure` is called only when ``enabled``."""

    def __init__(self) -> None:
        self.enabled = False
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None

    def configure(self, config: TracingConfig, environ: Mapping[str, str], *, service: str) -> None:
        """Turn tracing on if an OTLP endpoint is configured (the file first, then the environment)."""
        if not config.otlp_endpoint and not any(environ.get(name) for name in ENDPOINT_VARIABLES):
            return
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("tracing is configured but OpenTelemetry is not installed: pip install 'aiapi[otel]'")
            return
        # An endpoint from the file is a base URL, as the variable is; without one the exporter reads
        # the standard variables itself.
        exporter = (
            OTLPSpanExporter(endpoint=config.otlp_endpoint.rstrip("/") + "/v1/traces")
            if config.otlp_endpoint
            else OTLPSpanExporter()
        )
        provider = TracerProvider(resource=Resource.create({"service.name": config.service_name or service}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        self._provider = provider
        self._tracer = provider.get_tracer("aiapi")
        self.enabled = True

    def shutdown(self) -> None:
        """Export what is still buffered; the process is about to end."""
        if self._provider is not None:
            self._provider.shutdown()

    def start(
        self,
        name: str,
        *,
        kind: Kind = "internal",
        traceparent: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        start_ns: int | None = None,
    ) -> Span:
        """A started span: a child of ``traceparent`` if given, else of the span active here."""
        from opentelemetry.trace import SpanKind

        assert self._tracer is not None
        return self._tracer.start_span(
            name,
            context=_extract(traceparent) if traceparent else None,
            kind=SpanKind[kind.upper()],
            attributes=attributes,
            start_time=start_ns,
        )

    @contextlib.contextmanager
    def active(self, span: Span) -> Iterator[Span]:
        """Make ``span`` the parent of the spans started in this block (in this task)."""
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(span))
        try:
            yield span
        finally:
            context.detach(token)

    def annotate(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Add attributes to the span active here."""
        from opentelemetry import trace

        trace.get_current_span().set_attributes(attributes)

    def traceparent(self, span: Span | None = None) -> str | None:
        """The W3C ``traceparent`` of ``span`` (default: the active one), for the next hop."""
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        context = trace.set_span_in_context(span) if span is not None else None
        TraceContextTextMapPropagator().inject(carrier, context=context)
        return carrier.get("traceparent")

    def fail(self, span: Span, message: str) -> None:
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR, message)


def _extract(traceparent: str) -> Context:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


tracing = Tracing()
"""This process's tracing; off until :meth:`Tracing.configure` finds an endpoint."""
