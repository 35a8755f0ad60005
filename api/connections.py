"""The API's connections: deadlines for a request's head and body, and a cap on open connections.

uvicorn bounds only the idle time between two requests (``timeout_keep_alive``). A client that sends its
headers or its body a byte at a time, or opens a connection and sends nothing, holds a connection and a
file descriptor for ever, and a few hundred such clients use up the process's descriptors. uvicorn's own
``limit_concurrency`` answers a plain-text 503 only once a request's headers are in, so it cannot cut off
a client that never finishes them; hence this subclass of uvicorn's httptools protocol (as
:mod:`api.http_protocol` adapts it), with one timer per connection:

- from the connection's opening, or a new request's first byte, until its headers are in
  (``server.header_timeout_s``; one second when the process is over its cap);
- from the headers until the body's last byte (``server.body_timeout_s``): the request then fails
  with 408 (the handler sees the connection close; :mod:`api.intake.bodies` says why).

Past ``server.max_connections`` open connections a request gets an OpenAI-shaped 503 with
``Retry-After`` and the connection is closed, so load is shed by answering, not by running out of
descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from api.http_protocol import GatewayHttpProtocol
from api.metrics import ERRORS
from shared.errors import ServiceUnavailable

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

    from shared.config import ServerConfig

__all__ = ("BODY_TIMED_OUT", "connection_cap", "guarded_protocol")

log = logging.getLogger(__name__)

BODY_TIMED_OUT = "aiapi.body_timed_out"
"""Set in a request's scope state when its body did not arrive in time and its connection was closed."""

_CROWDED_HEADER_TIMEOUT_S = 1.0
"""Time a connection opened past the cap has to send its headers (and be told 503)."""

_BUSY = ServiceUnavailable(
    "The server has too many open connections; retry shortly.", code="too_many_connections", retry_after=1
)
_BUSY_BODY = msgspec.json.encode(_BUSY.body())
_BUSY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BUSY_BODY)).encode()),
    (b"retry-after", b"1"),
    (b"connection", b"close"),
]


async def _shed(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The app a request over the connection cap gets: an OpenAI-shaped 503, and the connection closed."""
    ERRORS.labels("503", "too_many_connections").inc()
    await send({"type": "http.response.start", "status": 503, "headers": _BUSY_HEADERS})
    await send({"type": "http.response.body", "body": _BUSY_BODY, "more_body": False})


def connection_cap(configured: int) -> int:
    """``server.max_connections``, lowered to half the descriptor limit: the rest is for Redis
    connections, log files, and the connections opened past the cap while they are being answered."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or configured <= soft // 2:
        return configured
    log.warning("server.max_connections %d lowered to %d, half the descriptor limit", configured, soft // 2)
    return max(1, soft // 2)


def guarded_protocol(server: ServerConfig) -> type[GuardedProtocol]:
    """The gateway's httptools protocol with this server's deadlines and connection cap."""
    cap = connection_cap(server.max_connections)

    class Configured(GuardedProtocol):
        max_connections = cap
        header_timeout_s = server.header_timeout_s
        body_timeout_s = server.body_timeout_s

    return Configured


class GuardedProtocol(GatewayHttpProtocol):
    """One connection, with a deadline on the part of a request being received (see the module)."""

    max_connections: ClassVar[int]
    header_timeout_s: ClassVar[float]
    body_timeout_s: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app = self.app
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        crowded = len(self.connections) > self.max_connections
        self._arm(_CROWDED_HEADER_TIMEOUT_S if crowded else self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a further request on a kept-alive connection
            self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self.app = _shed if len(self.connections) > self.max_connections else self._app
        super().on_headers_complete()
        self._arm(self.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, timeout_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body:
            self.cycle.scope["state"][BODY_TIMED_OUT] = True
        if not self.transport.is_closing():
            self.transport.close()
