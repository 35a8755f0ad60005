"""A deterministic local model: same prompt, same reply, with configurable latency and speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from shared.config import MockChannel
from shared.events import Finished, TextDelta, Usage
from worker.providers._base import ProviderOutput, UpstreamCall

__all__ = ("MockProvider",)


class MockProvider:
    def __init__(self, channel: MockChannel) -> None:
        self._channel = channel

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        channel, request = self._channel, call.request
        prompt = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
        words = channel.reply.replace("{prompt}", prompt).split()
        limit = request.sampling.max_output_tokens
        truncated = limit is not None and limit < len(words)
        if truncated and limit is not None:
            words = words[:limit]
        if channel.first_token_ms:
            await asyncio.sleep(channel.first_token_ms / 1000)
        interval = 1 / channel.tokens_per_second if channel.tokens_per_second > 0 else 0.0
        for position, word in enumerate(words):
            if interval and position:
                await asyncio.sleep(interval)
            yield TextDelta(word if position == 0 else " " + word)
        input_tokens = sum(len(message.text().split()) for message in request.messages)
        yield Usage(input_tokens=input_tokens, output_tokens=len(words))
        yield Finished("length" if truncated else "stop")

    async def aclose(self) -> None:
        return None
