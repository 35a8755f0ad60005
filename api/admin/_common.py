"""What the admin routes share: the admin-key guard and the shapes of their answers."""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar import Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.state import gateway_state
from shared.errors import AuthenticationFailed, PermissionDenied

__all__ = ("Deleted", "json_response", "require_admin")


class Deleted(msgspec.Struct):
    id: str
    deleted: bool = True


_encoder = msgspec.json.Encoder()


def json_response(body: msgspec.Struct, status: int = 200) -> Response[bytes]:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Litestar guard: the admin API is served only when its key is set, and only to requests bearing it."""
    expected = gateway_state(connection).settings.admin.resolved_key()
    if expected is None:
        raise PermissionDenied("The admin API is disabled: set its key to enable it.", code="admin_disabled")
    scheme, _separator, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise AuthenticationFailed("A valid admin key is required.")
