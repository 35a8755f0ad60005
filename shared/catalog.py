"""Which channels serve which model names: the routing table both roles build from the settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from shared.config import ChannelConfig

__all__ = ("Catalog", "Route")

log = logging.getLogger(__name__)


class Route(msgspec.Struct, frozen=True):
    channel: ChannelConfig
    upstream_model: str


class Catalog:
    """Model name → routes, best first. Disabled channels and channels without a usable account are left
    out, the latter with a warning (an unset key variable is the usual cause)."""

    def __init__(self, channels: Iterable[ChannelConfig]) -> None:
        routes: dict[str, list[Route]] = {}
        for channel in sorted(channels, key=lambda c: c.priority):
            if not channel.enabled:
                continue
            if not channel.resolved_accounts():
                variables = ", ".join(c.api_key_env for c in channel.credential_configs() if c.api_key_env)
                log.warning("channel %r disabled: no account has its key (variables: %s)", channel.name, variables)
                continue
            for name, upstream in channel.model_map().items():
                routes.setdefault(name, []).append(Route(channel, upstream))
        self._routes = routes

    def routes(self, model: str) -> list[Route]:
        return self._routes.get(model, [])

    def __contains__(self, model: object) -> bool:
        return model in self._routes

    def channels(self) -> list[ChannelConfig]:
        """Every enabled channel, once each."""
        return list(
            {route.channel.name: route.channel for routes in self._routes.values() for route in routes}.values()
        )

    def models(self) -> list[tuple[str, str]]:
        """``(model name, owning channel name)`` for every servable model, in a stable order."""
        return [(name, routes[0].channel.name) for name, routes in sorted(self._routes.items())]
