"""The console is mounted exactly when the admin API is on, and every page but the login sits behind a session."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from api.app import create_app
from api.console.guard import require_session
from shared.config import RedisConfig, Settings

_SETTINGS = Settings(redis=RedisConfig(url="redis://127.0.0.1:1/0"))


def _console_handlers(app: Litestar) -> dict[str, list[HTTPRouteHandler]]:
    return {
        path: [handler for handler in methods.values() if isinstance(handler, HTTPRouteHandler)]
        for path, methods in app.route_handler_method_map.items()
        if path.startswith("/console")
    }


def test_no_admin_key_no_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIAPI_ADMIN_KEY", raising=False)
    assert not _console_handlers(create_app(_SETTINGS))


def test_every_page_but_the_login_needs_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAPI_ADMIN_KEY", "admin")
    handlers = _console_handlers(create_app(_SETTINGS))
    assert {"/console", "/console/keys", "/console/api/overview", "/console/playground"} <= set(handlers)
    for path, found in handlers.items():
        hooks = {handler.resolve_before_request() for handler in found}
        if path.startswith(("/console/login", "/console/static")):
            assert hooks == {None}, path
        else:
            assert hooks == {require_session}, path
