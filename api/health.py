"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can serve: Redis and a worker are up,
and it is not shutting down; with how far behind the ledger's recorder is).

A load balancer should route by ``/readyz``; an orchestrator should restart by ``/healthz`` only, since
a Redis outage is not cured by restarting the API.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get
from redis.exceptions import RedisError

from api.openapi import documented
from api.state import gateway_state
from shared.keys import WORKER_HEALTH
from shared.ledger.backlog import Backlog, backlog

__all__ = ("HANDLERS", "healthz", "readyz")

_CHECK_TIMEOUT_S = 1.0

Check = Literal["ok", "unreachable", "none alive"]
Status = Literal["ready", "not ready", "shutting down"]


class Readiness(msgspec.Struct):
    status: Status
    redis: Check
    workers: Check
    ledger: Backlog | None = None
    """How far behind the recorder is (records not yet in the database); it does not decide readiness."""


class Liveness(msgspec.Struct):
    status: Literal["ok"] = "ok"


_encoder = msgspec.json.Encoder()


@get("/healthz", operation_class=documented(Liveness))
async def healthz() -> Response[bytes]:
    return Response(_encoder.encode(Liveness()), media_type="application/json")


@get("/readyz", operation_class=documented(Readiness, also={503: Readiness}))
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = gateway_state(request)
    redis = state.redis
    redis_check: Check = "ok"
    behind = None
    workers: Check = "ok"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            # Every worker refreshes this key at least every 10 s; one stopping deletes it even while
            # others run, so a worker this process saw moments ago still counts.
            if not await state.redis.exists(WORKER_HEALTH) and not state.dispatcher.workers_seen():
                workers = "none alive"
            behind = await backlog(redis) if state.settings.ledger.enabled else None
    except (RedisError, OSError, TimeoutError):
        redis_check = workers = "unreachable"
    ready = redis_check == "ok" and workers == "ok" and not state.drain.draining
    status: Status = "shutting down" if state.drain.draining else "ready" if ready else "not ready"
    body = Readiness(status, redis_check, workers, behind)
    return Response(_encoder.encode(body), status_code=200 if ready else 503, media_type="application/json")


HANDLERS = (healthz, readyz)
