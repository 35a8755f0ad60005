"""What one generation used: logged, counted, charged to its API key, and recorded in the ledger.

Whatever the end (completed, failed, cancelled, a background response nobody watched), the runner
settles the :class:`Tally` once: one Redis round trip charges the key (tokens and dollars) and appends
the generation's :class:`~shared.ledger.record.LedgerRecord` to the ledger stream, which the recorder
writes to the database later, off the request's path.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import msgspec

from shared.events import TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.ledger.record import LedgerRecord, encode_record
from shared.usage import LedgerEntry, estimate_tokens
from worker.metrics import TOKENS

if TYPE_CHECKING:
    from shared.errors import ErrorInfo
    from shared.generation import GenerationRequest
    from shared.ledger.prices import PriceBook
    from shared.ledger_config import LedgerConfig
    from shared.usage import UsageLedger
    from worker.providers import ProviderOutput

__all__ = ("RouteTrail", "Tally")

log = logging.getLogger(__name__)

_VISIBLE = (TextDelta, ToolCallStarted, ToolCallDelta)
_STATUS_WITHOUT_ERROR = {"completed": 200, "abandoned": 503}
_MAX_ERROR_MESSAGE = 1000


class RouteTrail(msgspec.Struct):
    """The upstream attempts of one generation, as the router makes them."""

    channel: str | None = None
    account: str | None = None
    attempts: int = 0

    def attempt(self, channel: str, account: str) -> None:
        self.channel, self.account, self.attempts = channel, account, self.attempts + 1


class Tally:
    """Watches a generation's outputs; :meth:`settle` charges and records them once it ends."""

    def __init__(self, request: GenerationRequest, ledger: LedgerConfig, prices: PriceBook) -> None:
        self._request = request
        self._ledger = ledger
        self._prices = prices
        self._characters = 0
        self._usage: Usage | None = None
        self._at_ms = int(time.time() * 1000)
        self._started = time.perf_counter()
        self._first_output_s: float | None = None
        self._text: list[str] | None = [] if ledger.enabled and ledger.store_bodies else None
        self.trail = RouteTrail()
        self.error: ErrorInfo | None = None
        """Why the generation failed, as the client was told."""

    def observe(self, output: ProviderOutput) -> None:
        if self._first_output_s is None and isinstance(output, _VISIBLE):
            self._first_output_s = time.perf_counter() - self._started
        if isinstance(output, TextDelta):
            self._characters += len(output.text)
            if self._text is not None:
                self._text.append(output.text)
        elif isinstance(output, ToolCallDelta):
            self._characters += len(output.arguments)
        elif isinstance(output, ThinkingDelta):
            self._characters += len(output.text)
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
        cost = self._prices.cost(self._request.model, usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        entry = None
        if self._ledger.enabled:
            record = self.record(usage, estimated, outcome=outcome, elapsed_s=elapsed_s, cost_usd=cost)
            entry = LedgerEntry(encode_record(record), self._ledger.stream_max_len)
        billing = self._request.billing
        if billing is None and entry is None:
            return
        await ledger.record(
            billing,
            usage,
            failed=outcome != "completed",
            estimated=estimated,
            now_s=int(time.time()),
            cost_usd=cost,
            entry=entry,
        )

    def record(self, usage: Usage, estimated: bool, *, outcome: str, elapsed_s: float, cost_usd: float) -> LedgerRecord:
        """The ledger's row for this generation."""
        request, error = self._request, self.error
        cap = self._ledger.max_body_bytes
        body = output = None
        if self._text is not None:
            body = msgspec.json.encode(request.messages).decode()[:cap]
            output = "".join(self._text)[:cap]
        return LedgerRecord(
            id=request.id,
            request_id=request.request_id,
            at_ms=self._at_ms,
            key=request.billing.key if request.billing is not None else None,
            model=request.model,
            channel=self.trail.channel,
            account=self.trail.account,
            client=request.client.user_agent,
            session_id=request.session.id if request.session is not None else None,
            outcome=outcome,
            status=error.status if error is not None else _STATUS_WITHOUT_ERROR.get(outcome, 500),
            error_code=error.code or error.type if error is not None else None,
            error_message=error.message[:_MAX_ERROR_MESSAGE] if error is not None else None,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            estimated=estimated,
            cost_usd=cost_usd,
            ttft_ms=round(self._first_output_s * 1e3, 3) if self._first_output_s is not None else None,
            total_ms=round(elapsed_s * 1e3, 3),
            attempts=self.trail.attempts,
            request_body=body,
            output=output,
        )
