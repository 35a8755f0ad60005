from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Protocol

from shared.config import Account
from shared.events import Finished, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import GenerationRequest

__all__ = ("NO_STATE", "Provider", "ProviderOutput", "SessionState", "UpstreamCall")

ProviderOutput = TextDelta | ThinkingDelta | ToolCallStarted | ToolCallDelta | Usage | Finished
"""What a provider yields; the runner numbers it and relays it. ``Finished`` comes last."""


class SessionState(Protocol):
    """What a stateful provider remembers of one conversation between turns (say, its upstream thread).

    Scoped to the session and the channel; it expires with the session.
    """

    async def load(self) -> bytes | None: ...

    async def save(self, value: bytes) -> None: ...


class _NoSessionState:
    async def load(self) -> bytes | None:
        return None

    async def save(self, value: bytes) -> None:
        return None


NO_STATE: SessionState = _NoSessionState()
"""The state of a request outside any session: nothing is remembered."""


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One attempt at a generation on one channel, as the router chose it."""

    request: GenerationRequest
    model: str
    """The upstream's name for the model."""
    account: Account
    """The credentials to call with."""
    state: SessionState = field(default=NO_STATE)
    traceparent: str | None = None
    """The W3C trace context of this attempt's span (tracing on): sent to the upstream as a header."""


class Provider(Protocol):
    """One upstream endpoint (a channel); one instance serves every account of it.

    ``stream`` yields output as the upstream produces it, never buffered, and raises a
    :class:`~shared.errors.GatewayError` on failure. Cancelling the iteration must stop the upstream call.
    """

    def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]: ...

    async def aclose(self) -> None: ...
