"""What every console page goes through: the session check, the CSRF check and the security headers.

A page asked for without a session redirects to the login page (a fetch or a form post gets 401); a
state-changing request must carry the session's CSRF token, as the form field ``csrf`` or the header
``x-csrf-token``, else 403. Every answer forbids framing (clickjacking), inline scripts (XSS) and caching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.response import Redirect

from api.console.auth import ConsoleAuth, ConsoleSession, same_secret
from api.state import gateway_state

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = (
    "COOKIE",
    "PREFIX",
    "console_session",
    "is_https",
    "require_session",
    "safe_next",
    "security_headers",
)

PREFIX = "/console"
COOKIE = "aiapi_console"
_SESSION_STATE = "aiapi.console_session"
_SAFE_METHODS = frozenset({"GET", "HEAD"})

_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def security_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: the headers above on every console answer, static files included."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in _HEADERS:
                    headers[name.decode()] = value.decode()
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def is_https(request: Request[Any, Any, Any]) -> bool:
    """Served over TLS, directly or behind a proxy that says so: the cookie is then ``Secure``."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def safe_next(target: str | None) -> str:
    """Where to go after login: a console path only, never another site (``//evil``, ``https://evil``)."""
    within = target == PREFIX or (target or "").startswith(f"{PREFIX}/")
    if target and within and "\\" not in target:
        return target
    return PREFIX


def console_session(request: Request[Any, Any, Any]) -> ConsoleSession:
    """The session :func:`require_session` found for this request."""
    session: ConsoleSession = request.scope["state"][_SESSION_STATE]
    return session


def _refusal(status: int, message: str) -> Response[str]:
    return Response(message, status_code=status, media_type="text/plain")


async def require_session(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """``before_request`` hook of the console's guarded routes."""
    auth = ConsoleAuth(gateway_state(request).redis)
    session = await auth.session(request.cookies.get(COOKIE, ""))
    if session is None:
        wants_page = request.method in _SAFE_METHODS and not request.url.path.startswith(f"{PREFIX}/api/")
        if wants_page:
            return Redirect(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)
        return _refusal(401, "Log in to the console first.")
    if request.method not in _SAFE_METHODS:
        given = request.headers.get("x-csrf-token")
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            field = (await request.form()).get("csrf")
            given = field if isinstance(field, str) else None
        if not given or not same_secret(given, session.csrf):
            return _refusal(403, "This form is stale or forged (missing or wrong CSRF token); reload the page.")
    request.scope.setdefault("state", {})[_SESSION_STATE] = session
    return None
