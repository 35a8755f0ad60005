"""Turning upstream HTTP failures into gateway errors, for every HTTP-based provider."""

from __future__ import annotations

import httpx
import msgspec

from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamTimeout

__all__ = ("error_from_response", "error_from_transport")


class _UpstreamErrorDetail(msgspec.Struct):
    message: str = ""
    code: str | int | None = None
    param: str | None = None


class _UpstreamErrorBody(msgspec.Struct):
    error: _UpstreamErrorDetail | str | None = None


def _detail(body: bytes) -> _UpstreamErrorDetail:
    try:
        parsed = msgspec.json.decode(body, type=_UpstreamErrorBody)
    except msgspec.DecodeError:
        return _UpstreamErrorDetail(message=body[:500].decode("utf-8", "replace").strip())
    if isinstance(parsed.error, str):
        return _UpstreamErrorDetail(message=parsed.error)
    return parsed.error or _UpstreamErrorDetail()


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


def error_from_response(channel: str, status: int, headers: httpx.Headers, body: bytes) -> GatewayError:
    """Map an upstream error reply: the client's own mistakes stay 4xx, everything else is the upstream's."""
    detail = _detail(body)
    code = None if detail.code is None else str(detail.code)
    message = detail.message or f"HTTP {status}"
    if status in (400, 413, 422):
        return InvalidRequest(message, code=code, param=detail.param)
    if status == 429:
        return RateLimited(f"upstream '{channel}' is rate limited: {message}", retry_after=_retry_after(headers))
    if status in (408, 504):
        return UpstreamTimeout(f"upstream '{channel}' timed out (HTTP {status})")
    return UpstreamError(f"upstream '{channel}' failed with HTTP {status}: {message}", code=f"upstream_{status}")


def error_from_transport(channel: str, exc: httpx.TransportError) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream '{channel}' did not answer in time ({type(exc).__name__})")
    return UpstreamError(f"cannot reach upstream '{channel}': {type(exc).__name__}", code="upstream_unreachable")
