"""The channels one worker serves: the routing table and one provider per channel, swapped whole.

The admin API may change channels while generations run. :meth:`ProviderPool.replace` builds the new set
and retires the providers of changed or removed channels; a retired provider is closed once the last
generation using it ends, so a change never breaks a stream in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from shared.catalog import Catalog
from shared.errors import UpstreamError

if TYPE_CHECKING:
    from shared.config import ChannelConfig
    from worker.providers import Provider
    from worker.registry import ProviderRegistry

__all__ = ("ProviderPool",)


class _Entry:
    __slots__ = ("channel", "provider", "retired", "users")

    def __init__(self, channel: ChannelConfig, provider: Provider) -> None:
        self.channel = channel
        self.provider = provider
        self.users = 0
        self.retired = False


class ProviderPool:
    def __init__(self, registry: ProviderRegistry, channels: Iterable[ChannelConfig] = ()) -> None:
        self._registry = registry
        self._entries: dict[str, _Entry] = {}
        self.catalog = Catalog([])
        self._install(list(channels))

    def _install(self, channels: list[ChannelConfig]) -> list[_Entry]:
        catalog = Catalog(channels)
        entries: dict[str, _Entry] = {}
        for channel in catalog.channels():
            current = self._entries.get(channel.name)
            if current is not None and current.channel == channel:
                entries[channel.name] = current
            else:
                entries[channel.name] = _Entry(channel, self._registry.create(channel))
        retired = [entry for name, entry in self._entries.items() if entries.get(name) is not entry]
        self._entries, self.catalog = entries, catalog
        return retired

    async def replace(self, channels: Iterable[ChannelConfig]) -> None:
        for entry in self._install(list(channels)):
            entry.retired = True
            if entry.users == 0:
                await entry.provider.aclose()

    @contextlib.asynccontextmanager
    async def use(self, channel: str) -> AsyncIterator[Provider]:
        """The provider of ``channel``, kept open until the caller is done with it.

        A channel removed since the router planned the attempt fails it like an unreachable upstream, so
        the router moves on to the next candidate.
        """
        entry = self._entries.get(channel)
        if entry is None:
            raise UpstreamError(f"channel '{channel}' was removed", code="channel_removed")
        entry.users += 1
        try:
            yield entry.provider
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                await entry.provider.aclose()

    async def aclose(self) -> None:
        await self.replace([])
