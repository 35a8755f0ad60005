"""The gateway's Lua scripts, loaded from ``shared/lua`` and bound to a Redis client."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from shared.batching import RedisBatcher

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ("Scripts",)


def _source(name: str) -> str:
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Each attribute runs one script with EVALSHA, loading it again if Redis forgot it (a restart)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.batcher = RedisBatcher(redis)
        """For the calls every running generation makes (events, lease renewals): one round trip for all."""
        self.emit: AsyncScript = redis.register_script(_source("emit"))
        self.acquire: AsyncScript = redis.register_script(_source("acquire"))
        self.renew: AsyncScript = redis.register_script(_source("renew"))
        self.release: AsyncScript = redis.register_script(_source("release"))
        self.claim: AsyncScript = redis.register_script(_source("claim"))
        self.admit: AsyncScript = redis.register_script(_source("admit"))
        self.hold: AsyncScript = redis.register_script(_source("hold"))
        self.save_state: AsyncScript = redis.register_script(_source("save_state"))
        self.slot: AsyncScript = redis.register_script(_source("slot"))
        self.access_limit: AsyncScript = redis.register_script(_source("access_limit"))
        self.settle: AsyncScript = redis.register_script(_source("settle"))
