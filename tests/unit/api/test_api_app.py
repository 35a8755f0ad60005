"""The application's routing: each front door under both public prefixes, the admin API behind its guard."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from api.admin._common import require_admin
from api.app import PUBLIC_PREFIXES, create_app
from shared.config import RedisConfig, Settings


@pytest.fixture(scope="module")
def app() -> Litestar:
    return create_app(Settings(redis=RedisConfig(url="redis://127.0.0.1:1/0")))


def _handlers(app: Litestar) -> dict[str, dict[str, HTTPRouteHandler]]:
    return {
        path: {method: handler for method, handler in methods.items() if isinstance(handler, HTTPRouteHandler)}
        for path, methods in app.route_handler_method_map.items()
    }


@pytest.mark.parametrize("prefix", PUBLIC_PREFIXES)
@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/chat/completions", "POST"),
        ("/responses", "POST"),
        ("/messages", "POST"),
        ("/messages/count_tokens", "POST"),
        ("/responses/{response_id:str}", "GET"),
        ("/responses/{response_id:str}", "DELETE"),
        ("/responses/{response_id:str}/cancel", "POST"),
        ("/responses/{response_id:str}/input_items", "GET"),
        ("/models", "GET"),
        ("/models/{model:path}", "GET"),
    ],
)
def test_every_public_route_is_served_under_each_prefix(app: Litestar, prefix: str, path: str, method: str) -> None:
    assert method in _handlers(app)[prefix + path]


def test_every_admin_route_is_guarded_and_nothing_else_is(app: Litestar) -> None:
    admin = 0
    for path, handlers in _handlers(app).items():
        for method, handler in handlers.items():
            # Litestar wraps a sync guard; the wrapper keeps the function as ``func``.
            guarded = any(getattr(guard, "func", guard) is require_admin for guard in handler.resolve_guards())
            assert guarded == path.startswith("/admin/"), path
            admin += guarded and method != "OPTIONS"
    assert admin == 19


def test_health_routes_sit_outside_the_prefixes(app: Litestar) -> None:
    handlers = _handlers(app)
    assert "GET" in handlers["/healthz"]
    assert "GET" in handlers["/readyz"]
    assert not any(path.endswith("/healthz") and path != "/healthz" for path in handlers)
