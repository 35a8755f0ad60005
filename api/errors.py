"""The one place where exceptions become OpenAI-shaped HTTP error responses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap, Send

from api.metrics import ERRORS
from api.middleware import REQUEST_ID_KEY, request_id
from shared.errors import ErrorBody, ErrorDetail, GatewayError

__all__ = ("ErrorShape", "error_headers", "exception_handlers", "gateway_error_response", "openai_shape", "send_error")

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()

_HTTP_TYPES = {401: "invalid_request_error", 403: "permission_denied", 404: "invalid_request_error"}


def _response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)


def error_headers(error: GatewayError) -> dict[str, str]:
    """The headers of ``error``'s answer, whatever its shape (and its count in the error metric)."""
    ERRORS.labels(str(error.status), error.code or error.type).inc()
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, round(error.retry_after)))
    if error.status < 500 and error.status not in (409, 429):
        headers["x-should-retry"] = "false"
    return headers


def gateway_error_response(error: GatewayError) -> Response[bytes]:
    return _response(error.status, error.body(), error_headers(error))


ErrorShape = Callable[[GatewayError], tuple[int, bytes]]
"""A front door's error answer: its status and body for a gateway error."""


def openai_shape(error: GatewayError) -> tuple[int, bytes]:
    return error.status, _encoder.encode(error.body())


async def send_error(error: GatewayError, send: Send, shape: ErrorShape = openai_shape) -> None:
    """Answer ``error`` straight to the ASGI ``send`` of a middleware, where Litestar's exception handlers
    would answer it outside the request middleware (and so without its id, log line and metrics)."""
    status, body = shape(error)
    headers = [(name.encode(), value.encode()) for name, value in error_headers(error).items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return gateway_error_response(exc)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    message = exc.detail or "HTTP error"
    if status == 404:
        message = f"Unknown path: {request.method} {request.url.path}"
    elif status == 413:
        message = "The request body is too large."
    error_type = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    headers = dict(exc.headers or {})
    if REQUEST_ID_KEY not in request.scope.get("state", {}):
        # No route matched, so the request middleware, which gives every other response its id, never ran.
        headers["x-request-id"] = request_id(request.scope)
    return _response(status, ErrorBody(ErrorDetail(message, error_type, None, None)), headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    detail = ErrorDetail("The gateway failed to process the request.", "server_error", None, None)
    return _response(500, ErrorBody(detail))


exception_handlers: ExceptionHandlersMap = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
