"""``x-request-id`` on every response, generated once per request and kept in the ASGI scope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from shared.ids import new_request_id

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ("REQUEST_ID_KEY", "request_id_middleware")

REQUEST_ID_KEY = "aiapi.request_id"


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware
