"""The console's defences, over HTTP against real processes: sessions, CSRF, headers, redirects, guessing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from litestar.handlers import HTTPRouteHandler

from api.app import create_app
from shared.config import RedisConfig, Settings
from tests.e2e.console_env import ADMIN_KEY, console, ledger_path
from tests.harness import GatewayProcesses

__all__ = ("console", "ledger_path")

pytestmark = pytest.mark.e2e

_OPEN = {"/console/login", "/console/login/link/{token:str}"}


def _console_routes() -> list[tuple[str, str]]:
    """Every guarded console route of the real application, with its method."""
    app = create_app(Settings(redis=RedisConfig(url="redis://127.0.0.1:1/0")))
    return sorted(
        (path, method)
        for path, methods in app.route_handler_method_map.items()
        if path.startswith("/console") and path not in _OPEN and not path.startswith("/console/static")
        for method, handler in methods.items()
        if isinstance(handler, HTTPRouteHandler) and method in ("GET", "POST")
    )


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.fixture
def anonymous(console: GatewayProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.base_url.removesuffix("/v1"), follow_redirects=False) as client:
        yield client


def _logged_in(client: httpx.Client) -> str:
    """Log ``client`` in; the session's CSRF token."""
    form = client.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token
    answer = client.post("/console/login", data={"key": ADMIN_KEY, "login_token": token.group(1)})
    assert answer.status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/keys").text)
    assert csrf
    return csrf.group(1)


def test_the_route_list_is_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAPI_ADMIN_KEY", ADMIN_KEY)
    routes = _console_routes()
    assert ("/console/keys", "POST") in routes and ("/console/api/overview", "GET") in routes
    assert len(routes) >= 15


def test_every_console_route_needs_a_session(monkeypatch: pytest.MonkeyPatch, anonymous: httpx.Client) -> None:
    monkeypatch.setenv("AIAPI_ADMIN_KEY", ADMIN_KEY)
    for path, method in _console_routes():
        answer = anonymous.request(method, _concrete(path), data={"csrf": "x"} if method == "POST" else None)
        if method == "GET" and not path.startswith("/console/api/"):
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/login?next="), path
        else:
            assert answer.status_code == 401, (method, path)


def test_a_forged_or_missing_csrf_token_is_refused(monkeypatch: pytest.MonkeyPatch, anonymous: httpx.Client) -> None:
    monkeypatch.setenv("AIAPI_ADMIN_KEY", ADMIN_KEY)
    csrf = _logged_in(anonymous)
    for path, method in _console_routes():
        if method == "POST" and not path.endswith("/logout"):
            assert anonymous.post(_concrete(path), data={"name": "forged"}).status_code == 403, path
            assert anonymous.post(_concrete(path), data={"name": "forged", "csrf": "wrong"}).status_code == 403, path
    assert anonymous.post("/console/keys", data={"name": "with-token", "csrf": csrf}).status_code == 201
    assert anonymous.post("/console/keys/with-token/revoke", headers={"x-csrf-token": csrf}).status_code == 303


def test_pages_refuse_framing_and_inline_script(anonymous: httpx.Client) -> None:
    _logged_in(anonymous)
    for path in ("/console/login", "/console/overview", "/console/static/console.css"):
        headers = anonymous.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self';" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["cache-control"] == "no-store", path


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
def test_login_never_redirects_off_the_console(anonymous: httpx.Client, target: str) -> None:
    form = anonymous.get("/console/login", params={"next": target})
    assert "evil" not in form.text and "javascript" not in form.text
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token
    answer = anonymous.post("/console/login", data={"key": ADMIN_KEY, "login_token": token.group(1), "next": target})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console"


def test_the_cookie_is_secure_behind_tls(anonymous: httpx.Client) -> None:
    form = anonymous.get("/console/login", headers={"x-forwarded-proto": "https"})
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token
    answer = anonymous.post(
        "/console/login",
        data={"key": ADMIN_KEY, "login_token": token.group(1)},
        headers={"x-forwarded-proto": "https"},
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_no_secret_reaches_a_page(anonymous: httpx.Client) -> None:
    _logged_in(anonymous)
    for path in ("/console/overview", "/console/keys", "/console/channels", "/console/playground", "/console/sessions"):
        assert ADMIN_KEY not in anonymous.get(path).text, path


def test_a_login_form_posted_from_elsewhere_is_refused(anonymous: httpx.Client) -> None:
    answer = anonymous.post("/console/login", data={"key": ADMIN_KEY, "login_token": "made-up"})
    assert answer.status_code == 403
    assert "aiapi_console=" not in answer.headers.get("set-cookie", "")


def test_wrong_keys_are_rate_limited_per_client(console: GatewayProcesses) -> None:
    # From its own address (127.0.0.2), so the other tests' logins from 127.0.0.1 are not locked out.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=console.base_url.removesuffix("/v1"), transport=transport) as client:

        def attempt(key: str) -> httpx.Response:
            token = re.search(r'name="login_token" value="([^"]+)"', client.get("/console/login").text)
            assert token
            return client.post("/console/login", data={"key": key, "login_token": token.group(1)})

        statuses = [attempt(f"guess-{n}").status_code for n in range(10)]
        assert statuses == [401] * 10
        refused = attempt(ADMIN_KEY)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0


def test_pages_say_so_when_the_request_log_cannot_answer(redis_url: str) -> None:
    # The harness's own database, never migrated: every read of the request log fails.
    with (
        GatewayProcesses(redis_url=redis_url, config_toml="", env={"AIAPI_ADMIN_KEY": ADMIN_KEY}) as gateway,
        httpx.Client(base_url=gateway.base_url.removesuffix("/v1")) as client,
    ):
        _logged_in(client)
        assert client.get("/console/api/overview").status_code == 503
        for path in ("/console/requests", "/console/requests/some-id"):
            answer = client.get(path)
            assert answer.status_code == 503 and "unavailable" in answer.text, path
        for path in ("/console/overview", "/console/keys", "/console/channels", "/console/sessions"):
            assert client.get(path).status_code == 200, path
        assert "The request log is unavailable" in client.get("/console/channels").text
