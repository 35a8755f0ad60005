from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.config import (
    AnthropicChannel,
    ChannelConfig,
    ChaynsChannel,
    MockChannel,
    OpenAIChannel,
    ResponsesChannel,
)
from worker.providers import Provider
from worker.providers.anthropic import AnthropicProvider
from worker.providers.chayns import ChaynsProvider
from worker.providers.mock import MockProvider
from worker.providers.openai_chat import OpenAIChatProvider
from worker.providers.openai_responses import OpenAIResponsesProvider
from worker.toolbridge.provider import BridgedProvider, BridgeOptions

__all__ = ("ProviderRegistry", "default_registry")

ProviderFactory = Callable[[Any], Provider]


class ProviderRegistry:
    """Maps a channel's config type to the provider class that serves it."""

    def __init__(self) -> None:
        self._factories: dict[type[ChannelConfig], ProviderFactory] = {}

    def register(self, config_type: type[ChannelConfig], factory: ProviderFactory) -> None:
        self._factories[config_type] = factory

    def create(self, channel: ChannelConfig) -> Provider:
        try:
            factory = self._factories[type(channel)]
        except KeyError:
            raise LookupError(f"no provider registered for channel type {type(channel).__name__}") from None
        provider = factory(channel)
        return BridgedProvider(provider, BridgeOptions.of(channel)) if channel.tool_mode == "bridge" else provider


def default_registry() -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.register(OpenAIChannel, OpenAIChatProvider)
    registry.register(ResponsesChannel, OpenAIResponsesProvider)
    registry.register(MockChannel, MockProvider)
    registry.register(ChaynsChannel, ChaynsProvider)
    registry.register(AnthropicChannel, AnthropicProvider)
    return registry
