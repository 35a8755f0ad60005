from __future__ import annotations

import msgspec
import pytest

from shared import errors


@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (errors.InvalidRequest("x"), 400, "invalid_request_error", None),
        (errors.AuthenticationFailed("x"), 401, "invalid_request_error", "invalid_api_key"),
        (errors.PermissionDenied("x"), 403, "permission_denied", None),
        (errors.ModelNotFound("m"), 404, "invalid_request_error", "model_not_found"),
        (errors.Conflict("x"), 409, "conflict", None),
        (errors.RateLimited("x"), 429, "rate_limit_exceeded", "rate_limit_exceeded"),
        (errors.ClientClosed("x"), 499, "client_closed_request", "cancelled"),
        (errors.InternalError("x"), 500, "server_error", None),
        (errors.WorkerLost("x"), 500, "server_error", "worker_lost"),
        (errors.UpstreamError("x"), 502, "upstream_error", None),
        (errors.ServiceUnavailable("x"), 503, "service_unavailable", None),
        (errors.UpstreamTimeout("x"), 504, "timeout", "upstream_timeout"),
    ],
)
def test_each_error_has_its_status_type_and_code(
    error: errors.GatewayError, status: int, kind: str, code: str | None
) -> None:
    assert (error.status, error.type, error.code) == (status, kind, code)
    body = msgspec.json.decode(msgspec.json.encode(error.body()))
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_model_not_found_names_the_model_and_param() -> None:
    error = errors.ModelNotFound("gpt-x")
    assert "gpt-x" in error.message and error.param == "model"


def test_relayed_errors_keep_everything() -> None:
    original = errors.RateLimited("slow down", retry_after=2.5, param="p")
    info = msgspec.json.decode(msgspec.json.encode(original.info()), type=errors.ErrorInfo)
    rebuilt = errors.GatewayError.from_info(info)
    assert (rebuilt.status, rebuilt.type, rebuilt.code, rebuilt.message, rebuilt.param, rebuilt.retry_after) == (
        429,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "slow down",
        "p",
        2.5,
    )
    assert errors.RateLimited.status == 429  # rebuilding must not change the class attributes
