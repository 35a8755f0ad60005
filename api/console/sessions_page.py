"""The Sessions page: the conversations running now, the generation holding each one's gate, and a cancel button.

Gates are found with ``SCAN`` (no index of them is kept on the request path), bounded to a number of
keys scanned per page view so that the page stays fast on a large Redis; the page says when it stopped
early.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from api.console.guard import PREFIX
from api.console.render import page
from api.state import gateway_state
from shared.keys import PREFIX as KEY_PREFIX
from shared.keys import SessionKeys

__all__ = ("HANDLERS",)

_SCAN_BATCH = 1000
_SCAN_LIMIT = 50_000
"""Keys scanned per page view at most."""
_SHOWN = 200


class GateRow(msgspec.Struct):
    owner: str
    """The client identity the session belongs to (a digest naming its API key, not the key itself)."""
    session: str
    generation: str
    expires_ms: int


def _owner_and_session(key: bytes) -> tuple[str, str]:
    owner, _, session = key.decode().removeprefix(f"{KEY_PREFIX}:{{").removesuffix("}:gate").rpartition(":")
    return owner, session


@get("/sessions")
async def sessions(request: Request[Any, Any, Any]) -> Template:
    redis = gateway_state(request).redis
    found: list[bytes] = []
    cursor, scanned = 0, 0
    while True:
        cursor, batch = await redis.scan(cursor, match=SessionKeys("*", "*").gate, count=_SCAN_BATCH)
        found.extend(batch)
        scanned += _SCAN_BATCH
        if cursor == 0 or scanned >= _SCAN_LIMIT or len(found) >= _SHOWN:
            break
    found = found[:_SHOWN]
    async with redis.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.get(key)
            pipe.pttl(key)
        answers = await pipe.execute()
    rows = [
        GateRow(*_owner_and_session(key), holder.decode(), ttl)
        for key, holder, ttl in zip(found, answers[::2], answers[1::2], strict=True)
        if holder is not None
    ]
    return page(request, "sessions", rows=rows, partial=cursor != 0)


@post("/sessions/{generation:str}/cancel", status_code=303)
async def cancel(request: Request[Any, Any, Any], generation: FromPath[str]) -> Redirect:
    await gateway_state(request).dispatcher.cancel(generation)
    return Redirect(f"{PREFIX}/sessions", status_code=303)


HANDLERS = (sessions, cancel)
