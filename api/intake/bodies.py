"""Reading request bodies: a per-process byte budget, the checks every body passes, and why a read failed.

Every body a route may read (``POST``, ``PUT``, ``PATCH``) is read here, before any handler, guard or
admission sees it:

- Bodies being held at once are bounded per process (``server.max_body_bytes_in_flight``): a body
  that would go past it gets a quick 503 ``server_busy`` with ``Retry-After``, before it is read when
  it declares its length. Without the bound, 200 concurrent 5 MB bodies took the process from 58 MB to
  964 MB. A body counts until its response starts; then Litestar's cached copy is dropped too, so a
  long stream does not hold its request's body.
- The body passes :func:`~api.intake.decoding.check_body` (UTF-8, nesting) before anything decodes
  even a part of it, in every access mode.
- A client that closes its connection mid-upload is a 499 (Litestar says 500), and one whose body did
  not arrive within ``server.body_timeout_s`` (:mod:`api.connections` closed it) a 408, so the access
  log and the error metrics say what happened.
- The heap is trimmed after large bodies are freed: glibc keeps freed memory of a burst (616 MB ten
  seconds after one) unless asked to give it back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from litestar.enums import ScopeType
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from api.connections import BODY_TIMED_OUT
from api.errors import ErrorShape, send_error
from api.intake.decoding import check_body
from shared.errors import (
    ClientClosed,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from litestar.types import (
        ASGIApp,
        HTTPReceiveMessage,
        HTTPRequestEvent,
        Message,
        Receive,
        ReceiveMessage,
        Scope,
        Send,
    )

__all__ = ("BodyBudget", "body_guard")

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_TRIM_AFTER_BYTES = 64 * 1024 * 1024
"""Bytes of bodies freed since the last trim that make the next one worth its few milliseconds."""
_TRIM_DELAY_S = 1.0
"""A trim waits this long after the release that called for it, so a burst is trimmed once, after it."""


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return trim  # None off glibc


class BodyBudget:
    """The bytes of request bodies one process holds at once, and the heap trim after large ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._freed = 0
        self._trim = _malloc_trim()
        self._trim_scheduled = False

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size
        self._freed += size
        if self._freed >= _TRIM_AFTER_BYTES and self._trim is not None and not self._trim_scheduled:
            self._trim_scheduled = True
            asyncio.get_running_loop().call_later(_TRIM_DELAY_S, self._trim_heap)

    def _trim_heap(self) -> None:
        self._trim_scheduled = False
        self._freed = 0
        if self._trim is not None:
            self._trim(0)


class _Share:
    """One request's part of the budget, given back once (at its response's start, or its end)."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.size = 0

    def cover(self, size: int) -> None:
        if size > self.size:
            if not self._budget.take(size - self.size):
                raise ServiceUnavailable(
                    "The server is reading too many request bodies at once; retry shortly.",
                    code="server_busy",
                    retry_after=1,
                )
            self.size = size

    def give_back(self) -> None:
        self._budget.give(self.size)
        self.size = 0


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise InvalidRequest("The content-length header is not a number.") from None
    return 0


async def _read(scope: Scope, receive: Receive, share: _Share, max_bytes: int) -> bytes:
    declared = _declared_length(scope)
    if declared > max_bytes:
        raise PayloadTooLarge(f"The request body is over {max_bytes} bytes.")
    share.cover(declared)
    parts: list[bytes] = []
    size = 0
    while True:
        message = cast("HTTPReceiveMessage", await receive())
        if message["type"] == "http.disconnect":
            if scope["state"].get(BODY_TIMED_OUT):
                raise RequestTimeout("The request body did not arrive in time.")
            raise ClientClosed("The client closed the connection before its request body ended.")
        chunk = message["body"]
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The request body is over {max_bytes} bytes.")
        share.cover(size)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def body_guard(
    budget: BodyBudget, max_body_bytes: int, shape_for: Callable[[str], ErrorShape]
) -> Callable[[ASGIApp], ASGIApp]:
    """Litestar middleware reading, bounding and checking every body before the route (see the module).

    It answers before any route runs, so ``shape_for`` tells it, from the path, in which protocol's shape.
    """

    def wrap(app: ASGIApp) -> ASGIApp:
        async def guard(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["method"] not in _WITH_BODY:
                await app(scope, receive, send)
                return
            share = _Share(budget)
            try:
                read = await _read(scope, receive, share, max_body_bytes)
                check_body(read)
            except GatewayError as error:
                share.give_back()
                await send_error(error, send, shape_for(scope["path"]))
                return
            body: bytes | None = read
            del read  # only the replay may hold the body: this frame lives as long as the request

            async def replay() -> ReceiveMessage:
                nonlocal body
                if body is None:
                    return await receive()
                message: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
                body = None
                return message

            async def releasing_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # Litestar keeps the body it read in the scope for the whole request.
                    ScopeState.from_scope(scope).body = Empty
                    share.give_back()
                await send(message)

            try:
                await app(scope, replay, releasing_send)
            finally:
                share.give_back()

        return guard

    return wrap
