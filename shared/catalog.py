"""Which channels serve which model names: the routing table both roles build from the settings."""

from __future__ import annotations

import logging

import msgspec

from shared.config import ChannelConfig, OpenAIChannel, Settings

__all__ = ("Catalog", "Route")

log = logging.getLogger(__name__)


class Route(msgspec.Struct, frozen=True):
    channel: ChannelConfig
    upstream_model: str


class Catalog:
    """Model name → routes, best first. Channels missing their API key are left out, with a warning."""

    def __init__(self, settings: Settings) -> None:
        routes: dict[str, list[Route]] = {}
        for channel in sorted(settings.channels, key=lambda c: c.priority):
            if isinstance(channel, OpenAIChannel) and channel.api_key_env and channel.resolved_api_key() is None:
                log.warning(
                    "channel %r disabled: environment variable %s is not set", channel.name, channel.api_key_env
                )
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
