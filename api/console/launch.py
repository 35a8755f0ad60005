"""``aiapi up``'s console: on in open mode too, with an admin key made for the run and a one-time login link.

Without a configured admin key nobody could log in, so ``aiapi up`` makes one (random, never printed,
gone with the process) and prints a link that logs the browser in once. Later logins need the key, so
an operator who wants to log in again configures one.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import msgspec

from api.console.auth import LINK_TTL_S, token_digest
from api.console.guard import PREFIX
from shared.config import RedisConfig, Settings
from shared.keys import ConsoleKeys
from shared.redis_client import redis_client

__all__ = ("console_banner",)


def console_banner(settings: Settings, redis_url: str | None) -> str | None:
    """The line to print about the console: its URL, or a login link when the key was made here.

    ``None`` when the console is off (the admin key's variable is configured away).

    Sets the admin key's variable in this process's environment when it was unset, which turns the admin
    API and the console on for the API served from this process.
    """
    variable = settings.admin.api_key_env
    if variable is None:
        return None
    base = f"http://{settings.server.host}:{settings.server.port}{PREFIX}"
    if settings.admin.resolved_key() is not None:
        return f"aiapi: console at {base} (log in with the admin key)"
    os.environ[variable] = secrets.token_urlsafe(32)
    token = secrets.token_urlsafe(32)
    config = settings.redis if redis_url is None else msgspec.structs.replace(settings.redis, url=redis_url)
    asyncio.run(_store_link(config, token_digest(token)))
    minutes = LINK_TTL_S // 60
    return f"aiapi: console at {base}/login/link/{token} (a one-time login link, valid {minutes} minutes)"


async def _store_link(config: RedisConfig, digest: str) -> None:
    # Through the gateway's own client factory, so a Sentinel or TLS Redis is reached as the roles reach it.
    client = redis_client(config)
    try:
        await client.set(ConsoleKeys.login_link(digest), b"1", ex=LINK_TTL_S)
    finally:
        await client.aclose()
