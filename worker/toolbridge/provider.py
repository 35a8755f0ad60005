"""Tool calling for models without it: a provider wrapper that runs the text bridge around any provider.

The request's tools leave the API's shape and go into the prompt (:func:`apply_bridge`); the model's
text comes back through a :class:`BridgeTurn`, so plain text still streams at once and each call goes out
as an ordinary tool-call event the moment its closing tag arrives: the API and the client cannot tell the
bridge from native tool calling. A coding agent that sends no tools but teaches its own XML tool tags in
the system prompt gets its reply as text, under its rules (:class:`AgentXmlTurn`).

Which client it is comes from the request headers, unless the channel's config names one
(``tool_client``); the channel may also set the validation mode and the fallback. A client that takes one
call per turn has its reply end with that call: the upstream is stopped there. What the bridge had to do
about a turn is counted in ``aiapi_toolbridge_events``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import msgspec

from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted
from worker.metrics import TOOLBRIDGE
from worker.toolbridge.agent_protocol import AgentXmlTurn, protocol_tools
from worker.toolbridge.clients import ClientKind, ClientProfile, detect_client, profile_for, validator_for
from worker.toolbridge.parser import ToolCallParser
from worker.toolbridge.prompt import apply_bridge, new_trigger
from worker.toolbridge.sanitizer import OutputSanitizer
from worker.toolbridge.turn import BridgeTurn

if TYPE_CHECKING:
    from shared.channel_config import ChannelConfig
    from shared.generation import ClientInfo, GenerationRequest
    from worker.providers import Provider, ProviderOutput, UpstreamCall
    from worker.toolbridge.validator import Fallback, ValidationMode

__all__ = ("BridgeOptions", "BridgedProvider")


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeOptions:
    """A channel's bridge settings; ``None`` leaves the choice to the client's profile."""

    client: ClientKind | None = None
    validation: ValidationMode | None = None
    fallback: Fallback | None = None

    @classmethod
    def of(cls, channel: ChannelConfig) -> BridgeOptions:
        return cls(
            None if channel.tool_client == "auto" else channel.tool_client,
            None if channel.tool_validation == "auto" else channel.tool_validation,
            None if channel.tool_fallback == "auto" else channel.tool_fallback,
        )

    def profile(self, client: ClientInfo) -> ClientProfile:
        kind = self.client or detect_client(client.user_agent, client.headers)
        return profile_for(kind, validation=self.validation, fallback=self.fallback)


def _last_user_text(request: GenerationRequest) -> str:
    return next((m.text() for m in reversed(request.messages) if m.role == "user"), "")


def _bridge(
    request: GenerationRequest, profile: ClientProfile
) -> tuple[GenerationRequest, BridgeTurn | AgentXmlTurn | None]:
    """The request to send upstream and the turn that reads the reply; the request as it is when the
    bridge has nothing to do."""
    sanitizer = OutputSanitizer(profile.kind, fix_tag_typos=profile.fix_tag_typos)
    has_history = any(m.tool_calls or m.role == "tool" for m in request.messages)
    if not request.tools and not has_history:
        tags = protocol_tools(request.messages) if profile.one_call_per_turn else frozenset()
        turn = AgentXmlTurn(tags, sanitizer, wrap=profile.require_tool_call) if tags else None
        return request, turn
    trigger = new_trigger(request.session.id if request.session else None)
    messages = apply_bridge(
        request.messages,
        request.tools,
        request.tool_choice,
        trigger,
        one_call_per_turn=profile.one_call_per_turn,
        require_call=profile.require_tool_call,
    )
    bridged = msgspec.structs.replace(request, messages=messages, tools=[], tool_choice=None)
    parser = ToolCallParser(trigger, [tool.name for tool in request.tools], tools=request.tools)
    validator = validator_for(profile, request.tools, request.tool_choice)
    return bridged, BridgeTurn(parser, sanitizer, validator, user_text=_last_user_text(request))


class BridgedProvider:
    def __init__(self, inner: Provider, options: BridgeOptions | None = None) -> None:
        self._inner = inner
        self._options = options or BridgeOptions()

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        request, turn = _bridge(call.request, self._options.profile(call.request.client))
        if turn is None:
            async for output in self._inner.stream(call):
                yield output
            return
        try:
            async with contextlib.aclosing(self._inner.stream(dataclasses.replace(call, request=request))) as inner:
                async for output in inner:
                    if isinstance(output, TextDelta):
                        outputs = turn.feed(output.text)
                    elif isinstance(output, Finished):
                        outputs = turn.finish(output.finish_reason)
                    elif isinstance(output, ToolCallStarted | ToolCallDelta):
                        outputs = [turn.native(output)]
                    else:
                        outputs = [output]
                    for item in outputs:
                        yield item
                    if turn.complete and not isinstance(output, Finished):
                        # Stop the upstream rather than have the client wait for (and its key pay for)
                        # text it will never see; usage is then estimated.
                        for item in turn.finish("stop"):
                            yield item
                        return
        finally:
            for outcome in turn.outcomes:
                TOOLBRIDGE.labels(outcome=outcome).inc()

    async def aclose(self) -> None:
        await self._inner.aclose()
