"""Errors in Anthropic's shape, for the Messages front door's routes only.

``{"type": "error", "error": {"type", "message"}}`` with Anthropic's statuses: the gateway's own tree
(:mod:`shared.errors`) maps onto them here, so the rest of the gateway raises what it always raises. Where
the gateway or its upstream is saturated (no channel free, no worker, an upstream overloaded) the answer is
Anthropic's ``529 overloaded_error``, which its SDKs retry. The handlers are attached to the routes, so
the app-wide OpenAI-shaped handlers still serve every other route.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from api.errors import error_headers
from api.middleware import REQUEST_ID_KEY, request_id
from shared.errors import GatewayError

__all__ = ("EXCEPTION_HANDLERS", "AnthropicError", "ErrorDetail", "anthropic_error", "anthropic_shape")

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OVERLOADED = 529
_SATURATED_CODES = frozenset({"channels_busy", "upstream_overloaded"})
_encoder = msgspec.json.Encoder()


class ErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicError(msgspec.Struct):
    error: ErrorDetail
    type: Literal["error"] = "error"


def _type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error(error: GatewayError) -> tuple[int, ErrorDetail]:
    """The status and error object Anthropic would answer for ``error``."""
    status = error.status
    if status == 503 or error.code in _SATURATED_CODES:
        status = _OVERLOADED
    return status, ErrorDetail(_type(status), error.message)


def anthropic_shape(error: GatewayError) -> tuple[int, bytes]:
    """``error`` as Anthropic answers it: for answers written below Litestar (the body guard's)."""
    status, detail = anthropic_error(error)
    return status, _encoder.encode(AnthropicError(detail))


def _response(status: int, detail: ErrorDetail, headers: dict[str, str]) -> Response[bytes]:
    return Response(
        _encoder.encode(AnthropicError(detail)), status_code=status, media_type="application/json", headers=headers
    )


def _gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    status, detail = anthropic_error(exc)
    return _response(status, detail, error_headers(exc))


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    message = "The request body is too large." if status == 413 else (exc.detail or "HTTP error")
    headers = dict(exc.headers or {})
    if REQUEST_ID_KEY not in request.scope.get("state", {}):
        headers["x-request-id"] = request_id(request.scope)
    return _response(status, ErrorDetail(_type(status), message), headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(500, ErrorDetail("api_error", "The gateway failed to process the request."), {})


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
"""The Messages routes' exception handlers, in place of the app's OpenAI-shaped ones."""
