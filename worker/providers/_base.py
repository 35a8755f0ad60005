from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import GenerationRequest

__all__ = ("Provider", "ProviderOutput")

ProviderOutput = TextDelta | ToolCallStarted | ToolCallDelta | Usage | Finished
"""What a provider yields; the runner numbers it and relays it. ``Finished`` comes last."""


class Provider(Protocol):
    """One upstream endpoint.

    ``stream`` yields output as the upstream produces it, never buffered, and raises a
    :class:`~shared.errors.GatewayError` on failure. Cancelling the iteration must stop the upstream call.
    """

    def stream(self, request: GenerationRequest, model: str) -> AsyncIterator[ProviderOutput]: ...

    async def aclose(self) -> None: ...
