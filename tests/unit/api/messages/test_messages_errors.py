"""The gateway's errors in Anthropic's shape and statuses."""

from __future__ import annotations

import pytest

from api.messages.errors import anthropic_error
from api.messages.output import error_frame
from shared.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (AuthenticationFailed("who"), 401, "authentication_error"),
        (PermissionDenied("no"), 403, "permission_error"),
        (ModelNotFound("m"), 404, "not_found_error"),
        (RateLimited("slow down"), 429, "rate_limit_error"),
        (RateLimited("all channels full", code="channels_busy"), 529, "overloaded_error"),
        (ServiceUnavailable("no worker"), 529, "overloaded_error"),
        (UpstreamError("overloaded", code="upstream_overloaded"), 529, "overloaded_error"),
        (UpstreamError("broke"), 502, "api_error"),
        (GatewayError("bug"), 500, "api_error"),
    ],
)
def test_statuses_and_types(error: GatewayError, status: int, kind: str) -> None:
    answered, detail = anthropic_error(error)
    assert (answered, detail.type, detail.message) == (status, kind, error.message)


def test_a_mid_stream_error_is_an_error_event() -> None:
    assert error_frame(UpstreamError("broke")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"broke"}}\n\n'
    )
