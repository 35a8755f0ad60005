"""Tool calling for models without it: a provider wrapper that runs the text bridge around any provider.

The request's tools leave the API's shape and go into the prompt (:func:`apply_bridge`); the model's
text comes back through :class:`ToolCallParser`, so plain text still streams at once. The calls it
finds are checked by the client's validator when the model finishes (one-call-per-turn rules and
fallbacks need the whole turn) and then sent as ordinary tool-call events, so the API and the client
cannot tell the bridge from native tool calling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import msgspec

from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted
from shared.ids import new_call_id
from worker.toolbridge.clients import detect_client, profile_for, validator_for
from worker.toolbridge.parser import ParsedCall, TextOut, ToolCallParser
from worker.toolbridge.prompt import apply_bridge, new_trigger
from worker.toolbridge.sanitizer import OutputSanitizer

if TYPE_CHECKING:
    from worker.providers import Provider, ProviderOutput, UpstreamCall

__all__ = ("BridgedProvider",)


class BridgedProvider:
    def __init__(self, inner: Provider) -> None:
        self._inner = inner

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        request = call.request
        has_history = any(m.tool_calls or m.role == "tool" for m in request.messages)
        if not request.tools and not has_history:
            async for output in self._inner.stream(call):
                yield output
            return
        profile = profile_for(detect_client(request.client.user_agent))
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
        sanitizer = OutputSanitizer(profile.kind, fix_tag_typos=profile.fix_tag_typos)
        text: list[str] = []
        calls: list[ParsedCall] = []
        async for output in self._inner.stream(dataclasses.replace(call, request=bridged)):
            if isinstance(output, TextDelta):
                pieces = parser.feed(output.text)
            elif isinstance(output, Finished):
                pieces = parser.finish()
            else:
                yield output
                continue
            for piece in pieces:
                if isinstance(piece, TextOut):
                    text.append(piece.text)
                    cleaned = sanitizer.feed(piece.text)
                    if cleaned:
                        yield TextDelta(cleaned)
                else:
                    calls.append(piece)
            if isinstance(output, Finished):
                rest = sanitizer.flush()
                if rest:
                    yield TextDelta(rest)
                result = validator_for(profile, request.tools, request.tool_choice).check(calls, "".join(text))
                for index, parsed in enumerate(result.calls):
                    yield ToolCallStarted(index, new_call_id(), parsed.name)
                    yield ToolCallDelta(index, parsed.arguments_json)
                yield Finished("tool_calls" if result.calls else output.finish_reason)

    async def aclose(self) -> None:
        await self._inner.aclose()
