"""One bridged turn: the model's text in, the client's text and tool-call events out, as they happen.

Text goes through the parser, which holds back only what may still become the trigger or a tag, and the
sanitizer. Each call is checked the moment the parser has read its closing tag and sent at once, as a
``ToolCallStarted`` and one ``ToolCallDelta`` with the next index, after any text before it. Under a
one-call-per-turn client rule the turn is ``complete`` with the first sent call: the client would refuse
further calls, and what a model writes after a call is mostly the results it imagines. When the upstream
finishes, the end of the turn may add a fallback or forced call (:meth:`TurnCheck.close`), then
``Finished``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted
from shared.ids import new_call_id
from worker.toolbridge.parsed import BridgeOutput, ParsedCall, TextOut

if TYPE_CHECKING:
    from worker.providers import ProviderOutput
    from worker.toolbridge.parser import ToolCallParser
    from worker.toolbridge.sanitizer import OutputSanitizer
    from worker.toolbridge.validator import Outcome, ToolCallValidator

__all__ = ("BridgeTurn",)


class BridgeTurn:
    """``user_text`` (the user's last message) is what a forced call's text parameters are filled with."""

    def __init__(
        self, parser: ToolCallParser, sanitizer: OutputSanitizer, validator: ToolCallValidator, *, user_text: str = ""
    ) -> None:
        self._parser = parser
        self._sanitizer = sanitizer
        self._check = validator.turn()
        self._one_call = validator.one_call_per_turn
        self._user_text = user_text
        self._text: list[str] = []
        self._index = 0
        self._native: dict[int, int] = {}
        self._done = False

    @property
    def outcomes(self) -> list[Outcome]:
        return self._check.outcomes

    @property
    def complete(self) -> bool:
        """A one-call client has its call: nothing more the model writes would reach it."""
        return self._done

    def feed(self, chunk: str) -> list[ProviderOutput]:
        return self._pieces(self._parser.feed(chunk))

    def finish(self, finish_reason: str) -> list[ProviderOutput]:
        out = self._pieces(self._parser.finish())
        out += self._flush()
        end = self._check.close("".join(self._text), self._user_text)
        for call in end.calls:
            out += self._send(call)
        out.append(Finished("tool_calls" if self._index else finish_reason))
        return out

    def native(self, output: ToolCallStarted | ToolCallDelta) -> ToolCallStarted | ToolCallDelta:
        """A call the upstream made natively after all, renumbered so that it cannot collide with ours."""
        if isinstance(output, ToolCallStarted):
            self._native[output.index] = self._index
            self._index += 1
            return ToolCallStarted(self._native[output.index], output.call_id, output.name)
        return ToolCallDelta(self._native.get(output.index, output.index), output.arguments)

    def _pieces(self, pieces: list[BridgeOutput]) -> list[ProviderOutput]:
        out: list[ProviderOutput] = []
        for piece in pieces:
            if self._done:
                if isinstance(piece, ParsedCall):
                    self._check.offer(piece)  # refused, and counted as the client rule at work
            elif isinstance(piece, TextOut):
                cleaned = self._sanitizer.feed(piece.text)
                if cleaned:
                    self._text.append(cleaned)
                    out.append(TextDelta(cleaned))
            else:
                checked = self._check.offer(piece)
                if checked is not None:
                    out += self._flush()
                    out += self._send(checked)
                    self._done = self._one_call
        return out

    def _flush(self) -> list[ProviderOutput]:
        rest = self._sanitizer.flush()
        if not rest:
            return []
        self._text.append(rest)
        return [TextDelta(rest)]

    def _send(self, call: ParsedCall) -> list[ProviderOutput]:
        index = self._index
        self._index += 1
        return [ToolCallStarted(index, new_call_id(), call.name), ToolCallDelta(index, call.arguments_json)]
