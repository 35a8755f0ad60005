"""A generation runner wired as a worker wires it, for tests that run generations in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.scripts import Scripts
from worker.cooldowns import Cooldowns
from worker.failover import Router
from worker.provider_pool import ProviderPool
from worker.registry import ProviderRegistry, default_registry
from worker.runner import GenerationRunner

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.config import Settings

__all__ = ("build_runner",)


def build_runner(
    redis: Redis, settings: Settings, *, registry: ProviderRegistry | None = None, worker_id: str = "w1"
) -> GenerationRunner:
    scripts = Scripts(redis)
    pool = ProviderPool(registry or default_registry(), settings.channels)
    router = Router(
        providers=pool,
        scripts=scripts,
        routing=settings.routing,
        cooldowns=Cooldowns(),
        slot_ttl_s=settings.worker.lease_ttl_s,
    )
    return GenerationRunner(scripts=scripts, settings=settings, router=router, worker_id=worker_id)
