"""Logging in and out of the console: with the admin key, or once with a link ``aiapi up`` printed.

The login form is protected from cross-site posting by a double-submit token (a cookie plus the same
value in the form), since there is no session yet to hold a CSRF token.
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath
from litestar.response import Redirect, Template

from api.console.auth import SESSION_TTL_S, ConsoleAuth, TooManyAttempts, same_secret
from api.console.guard import COOKIE, PREFIX, is_https, safe_next
from api.state import gateway_state

__all__ = ("GUARDED", "OPEN")

_LOGIN_COOKIE = "aiapi_console_login"


def _session_cookie(request: Request[Any, Any, Any], token: str, max_age: int = SESSION_TTL_S) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=token,
        path=PREFIX,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def _form(request: Request[Any, Any, Any], error: str | None = None, status: int = 200) -> Template:
    token = secrets.token_urlsafe(24)
    cookie = Cookie(
        key=_LOGIN_COOKIE,
        value=token,
        path=f"{PREFIX}/login",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return Template(
        template_name="login.html",
        context={"login_token": token, "next": safe_next(request.query_params.get("next")), "error": error},
        status_code=status,
        media_type="text/html",
        cookies=[cookie],
    )


@get("/login")
async def login_form(request: Request[Any, Any, Any]) -> Template:
    return _form(request)


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await request.form()
    given, token = str(form.get("key", "")), str(form.get("login_token", ""))
    cookie_token = request.cookies.get(_LOGIN_COOKIE, "")
    if not token or not cookie_token or not same_secret(token, cookie_token):
        return _form(request, "The login form expired; try again.", status=403)
    state = gateway_state(request)
    expected = state.settings.admin.resolved_key()
    if expected is None:
        return _form(request, "The console is off: no admin key is configured.", status=403)
    auth = ConsoleAuth(state.redis)
    client = request.client.host if request.client else "unknown"
    try:
        valid = await auth.check_key(given, expected, client)
    except TooManyAttempts as exc:
        template = _form(request, f"Too many wrong keys; try again in {exc.retry_after} s.", status=429)
        template.headers["retry-after"] = str(exc.retry_after)
        return template
    if not valid:
        return _form(request, "That is not the admin key.", status=401)
    target = safe_next(str(form.get("next", "")))
    return Redirect(target, status_code=303, cookies=[_session_cookie(request, await auth.open_session())])


@get("/login/link/{token:str}")
async def login_link(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[Any]:
    auth = ConsoleAuth(gateway_state(request).redis)
    if not await auth.redeem_link(token):
        return _form(request, "That login link was used already or has expired; log in with the admin key.", 403)
    return Redirect(PREFIX, status_code=303, cookies=[_session_cookie(request, await auth.open_session())])


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    await ConsoleAuth(gateway_state(request).redis).close_session(request.cookies.get(COOKIE, ""))
    return Redirect(f"{PREFIX}/login", status_code=303, cookies=[_session_cookie(request, "", max_age=0)])


OPEN = (login_form, login, login_link)
"""Routes served without a session."""
GUARDED = (logout,)
