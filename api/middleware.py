"""Per-request bookkeeping around every route: the request id, its log context, and the HTTP metrics.

The request id is the client's ``x-request-id`` when it sent a sane one (so a caller can trace its own
id through our logs), else a new one. It is kept in the ASGI scope for handlers, set as the logging
context for everything this request runs, echoed on the response, and carried in the job to the worker
and the upstream call. With tracing on, the request is also a server span (:mod:`shared.tracing`).
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from api.metrics import FIRST_OUTPUT_KEY, REQUEST_DURATION, REQUESTS, TTFT
from shared import logs
from shared.ids import new_request_id
from shared.tracing import tracing

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
    from opentelemetry.trace import Span

__all__ = ("REQUEST_ID_KEY", "request_id", "request_middleware")

access_log = logging.getLogger("aiapi.access")

REQUEST_ID_KEY = "aiapi.request_id"

_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_UNMEASURED = frozenset({"/healthz", "/readyz", "/metrics"})


def request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` if it is sane, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode() if _CLIENT_ID.fullmatch(value) else new_request_id()
    return new_request_id()


def request_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        given = request_id(scope)
        logs.request_id.set(given)
        state = scope.setdefault("state", {})
        state[REQUEST_ID_KEY] = given
        header = (b"x-request-id", given.encode())
        route: str = scope.get("path_template") or scope["path"]
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        span = _request_span(scope, route) if tracing.enabled and route not in _UNMEASURED else None
        try:
            if span is None:
                await app(scope, receive, observed_send)
            else:
                with tracing.active(span):
                    await app(scope, receive, observed_send)
        finally:
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    tracing.fail(span, str(status))
                span.end()
            if route not in _UNMEASURED:
                elapsed = time.perf_counter() - started
                REQUESTS.labels(route, scope["method"], str(status)).inc()
                REQUEST_DURATION.labels(route).observe(elapsed)
                first_output: float | None = state.get(FIRST_OUTPUT_KEY)
                if first_output is not None:
                    TTFT.labels(route).observe(first_output - started)
                fields = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1e3, 1),
                }
                access_log.info("%(method)s %(path)s %(status)s %(ms)s ms", fields, extra=fields)

    return middleware


def _request_span(scope: HTTPScope, route: str) -> Span:
    """The request's server span: its trace is the client's when it sent a ``traceparent``."""
    parent = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"traceparent"), None)
    attributes = {"http.request.method": scope["method"], "http.route": route, "url.path": scope["path"]}
    return tracing.start(f"{scope['method']} {route}", kind="server", traceparent=parent, attributes=attributes)
