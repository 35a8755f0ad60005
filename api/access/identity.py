"""Who is calling: a stable digest of the client's API key, used to scope what it may see."""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request

__all__ = ("client_identity",)


def client_identity(request: Request[Any, Any, Any]) -> str:
    """A digest of the bearer token (never the token itself); requests without one share ``anonymous``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "anonymous"
    return hashlib.sha256(token.strip().encode()).hexdigest()[:32]
