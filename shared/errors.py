"""The gateway's one exception tree, and how each error looks on the wire.

Every failure the gateway reports is a :class:`GatewayError`. Its class fixes the HTTP status and the
OpenAI error ``type``; an instance may refine ``code`` and ``param``. The API maps any of them to
``{"error": {"message", "type", "param", "code"}}`` in exactly one place, and a worker sends them to the
API as :class:`ErrorInfo` inside a ``failed`` event.

    GatewayError ..................... 500 server_error
    ├── InvalidRequest ............... 400 invalid_request_error
    ├── AuthenticationFailed ......... 401 invalid_request_error / invalid_api_key
    ├── PermissionDenied ............. 403 permission_denied
    ├── NotFound ..................... 404 invalid_request_error
    │   └── ModelNotFound ............ 404 invalid_request_error / model_not_found
    ├── RequestTimeout ............... 408 invalid_request_error / request_timeout
    ├── PayloadTooLarge .............. 413 invalid_request_error / payload_too_large
    ├── Conflict ..................... 409 conflict
    ├── RateLimited .................. 429 rate_limit_exceeded (carries retry_after)
    ├── ClientClosed ................. 499 client_closed_request
    ├── InternalError ................ 500 server_error
    │   ├── WorkerLost ............... 500 server_error / worker_lost
    │   └── GenerationLost ........... 500 server_error / generation_lost (Redis came back without it)
    ├── UpstreamError ................ 502 upstream_error
    ├── ServiceUnavailable ........... 503 service_unavailable (no worker took the job)
    │   └── RedisUnavailable ......... 503 service_unavailable / redis_unavailable
    └── UpstreamTimeout .............. 504 timeout
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = (
    "AuthenticationFailed",
    "ClientClosed",
    "Conflict",
    "ErrorBody",
    "ErrorDetail",
    "ErrorInfo",
    "GatewayError",
    "GenerationLost",
    "InternalError",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RedisUnavailable",
    "RequestTimeout",
    "ServiceUnavailable",
    "UpstreamError",
    "UpstreamTimeout",
    "WorkerLost",
)


class ErrorDetail(msgspec.Struct):
    """The inner object of OpenAI's error body; all four keys are always present."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class ErrorInfo(msgspec.Struct, frozen=True):
    """An error as it travels from a worker to the API inside a ``failed`` event."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        self.retry_after = retry_after

    def info(self) -> ErrorInfo:
        return ErrorInfo(self.status, self.type, self.message, self.code, self.param, self.retry_after)

    def body(self) -> ErrorBody:
        return ErrorBody(ErrorDetail(self.message, self.type, self.param, self.code))

    @staticmethod
    def from_info(info: ErrorInfo) -> GatewayError:
        """Rebuild an error received from a worker; the status and type travel with it unchanged."""
        error = _RelayedError(info.message, code=info.code, param=info.param, retry_after=info.retry_after)
        error.status = info.status  # type: ignore[misc]
        error.type = info.type  # type: ignore[misc]
        return error


class _RelayedError(GatewayError):
    """An error raised on a worker, carried to the API with its status and type as they were."""


class InvalidRequest(GatewayError):
    """The request body or parameters are not acceptable."""

    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    """No API key, or an unknown one."""

    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """The key is valid but may not do this (e.g. use this model)."""

    status = 403
    type = "permission_denied"


class NotFound(GatewayError):
    """The addressed resource does not exist (or belongs to someone else)."""

    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    """No configured channel serves the requested model."""

    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")


class RequestTimeout(GatewayError):
    """The client did not send its request body within ``server.body_timeout_s``."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(GatewayError):
    """The request body is over ``server.max_body_bytes``."""

    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"


class Conflict(GatewayError):
    """The request collides with one already running."""

    status = 409
    type = "conflict"


class RateLimited(GatewayError):
    """A limit was hit, here or upstream; ``retry_after`` says when to try again."""

    status = 429
    type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"


class ClientClosed(GatewayError):
    """The client went away or cancelled before the generation finished."""

    status = 499
    type = "client_closed_request"
    default_code = "cancelled"


class InternalError(GatewayError):
    """A bug or an unexpected state inside the gateway."""


class WorkerLost(InternalError):
    """The worker running a generation stopped without finishing it."""

    default_code = "worker_lost"


class GenerationLost(InternalError):
    """Redis no longer holds a running generation (it restarted or failed over without the data), so
    nobody can finish it: its worker loses the lease with it, though the worker itself is alive."""

    default_code = "generation_lost"


class UpstreamError(GatewayError):
    """The upstream provider failed or answered with something unusable."""

    status = 502
    type = "upstream_error"


class ServiceUnavailable(GatewayError):
    """The gateway cannot take work right now (Redis unreachable, no worker picked the job up)."""

    status = 503
    type = "service_unavailable"


class RedisUnavailable(ServiceUnavailable):
    """Redis could not be reached, or the connection dropped mid-request."""

    default_code = "redis_unavailable"

    def __init__(self, message: str = "The gateway cannot reach Redis.") -> None:
        super().__init__(message)


class UpstreamTimeout(GatewayError):
    """The upstream provider did not answer in time."""

    status = 504
    type = "timeout"
    default_code = "upstream_timeout"
