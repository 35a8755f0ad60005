"""What one generation used: logged, counted, and charged to its API key however it ended."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from shared.events import TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.usage import estimate_tokens
from worker.metrics import TOKENS

if TYPE_CHECKING:
    from shared.generation import GenerationRequest
    from shared.usage import UsageLedger
    from worker.providers import ProviderOutput

__all__ = ("Tally",)

log = logging.getLogger(__name__)


class Tally:
    """Watches a generation's outputs; :meth:`settle` charges them to the request's key once it ends."""

    def __init__(self, request: GenerationRequest) -> None:
        self._request = request
        self._characters = 0
        self._usage: Usage | None = None

    def observe(self, output: ProviderOutput) -> None:
        if isinstance(output, TextDelta):
            self._characters += len(output.text)
        elif isinstance(output, ToolCallDelta):
            self._characters += len(output.arguments)
        elif isinstance(output, ToolCallStarted):
            self._characters += len(output.name)
        elif isinstance(output, Usage):
            self._usage = output

    def figures(self) -> tuple[Usage, bool]:
        """The upstream's usage, or an estimate from the text when it reported none; and which it is."""
        if self._usage is not None:
            return self._usage, False
        prompt = sum(len(message.text()) for message in self._request.messages)
        prompt += sum(len(tool.name) + len(tool.description or "") for tool in self._request.tools)
        return Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(self._characters)), True

    async def settle(self, ledger: UsageLedger, *, outcome: str, elapsed_s: float) -> None:
        usage, estimated = self.figures()
        fields = {
            "model": self._request.model,
            "outcome": outcome,
            "ms": round(elapsed_s * 1e3, 1),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "estimated": estimated,
        }
        log.info("%(model)s %(outcome)s in %(ms)s ms, %(input_tokens)s+%(output_tokens)s tokens", fields, extra=fields)
        TOKENS.labels("input").inc(usage.input_tokens)
        TOKENS.labels("output").inc(usage.output_tokens)
        TOKENS.labels("cached").inc(usage.cached_tokens)
        billing = self._request.billing
        if billing is not None:
            failed = outcome != "completed"
            await ledger.record(billing, usage, failed=failed, estimated=estimated, now_s=int(time.time()))
