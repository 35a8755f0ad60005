"""Who is calling: the API key a request presents, and a stable digest of it to scope what it may see."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from litestar import Request

__all__ = ("client_identity", "presented_key")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key as ``Authorization: Bearer <key>`` (OpenAI clients, Claude Code's auth token) or as
    ``x-api-key`` (Anthropic's SDKs); ``None`` when there is neither."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def client_identity(request: Request[Any, Any, Any]) -> str:
    """A digest of the presented key (never the key itself); requests without one share ``anonymous``."""
    key = presented_key(request.headers)
    return "anonymous" if key is None else hashlib.sha256(key.encode()).hexdigest()[:32]
