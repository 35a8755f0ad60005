"""Tracing off costs nothing: no OpenTelemetry module is even imported; on, it needs an endpoint."""

from __future__ import annotations

import subprocess
import sys

from shared.config import TracingConfig
from shared.tracing import Tracing

_PROBE = """
import sys
import api.app, api.server, shared.cli, worker.main, worker.failover
from shared.config import load_settings
from shared.tracing import tracing
tracing.configure(load_settings(environ={}).tracing, {}, service="aiapi-api")
print(tracing.enabled, sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def test_off_imports_nothing_of_opentelemetry() -> None:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False []"


def test_on_with_an_endpoint_from_the_file_or_the_environment() -> None:
    from_file = Tracing()
    from_file.configure(TracingConfig(otlp_endpoint="http://127.0.0.1:1"), {}, service="aiapi-api")
    from_environment = Tracing()
    from_environment.configure(TracingConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, service="w")
    assert from_file.enabled and from_environment.enabled
    span = from_file.start("s", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    traceparent = from_file.traceparent(span)
    assert traceparent is not None and traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert traceparent.split("-")[2] != "00f067aa0ba902b7"
    for tracing in (from_file, from_environment):
        tracing.shutdown()
