"""The admin API (``/admin``): channels, accounts, API keys and prices, changed at runtime; the request log."""

from __future__ import annotations

from litestar import Router

from api.admin import channels, keys, ledger, prices
from api.admin._common import require_admin

__all__ = ("admin_router",)


def admin_router() -> Router:
    """Every admin route under ``/admin``, behind the admin-key guard."""
    return Router(
        "/admin",
        guards=[require_admin],
        route_handlers=[*channels.HANDLERS, *keys.HANDLERS, *ledger.HANDLERS, *prices.HANDLERS],
    )
