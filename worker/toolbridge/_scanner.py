"""The bottom layer of the response parser: the input buffer, the markup taken so far, and reading one tag.

The parser is a state machine over a growing buffer. This layer owns the buffer and the text output; the
call-block grammar (:mod:`~worker.toolbridge._blocks`) and the text around blocks
(:mod:`~worker.toolbridge.parser`) are built on it.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Final

from worker.toolbridge._markup import TAG, LineTracker, Tag, tag_of
from worker.toolbridge.parsed import BridgeOutput, TextOut

__all__ = ("MAX_TAG", "WAIT", "Scanner", "State")

MAX_TAG = 512
"""The longest tag read; anything longer is not markup."""

WAIT: Final = object()
"""The buffer ends before what is being read is decided: more input (or its end) is needed."""


class State(Enum):
    TEXT = auto()
    OPEN = auto()
    CALLS = auto()
    INVOKE = auto()
    PARAM = auto()
    BODY = auto()
    ELEMENT = auto()
    AFTER = auto()


class Scanner:
    """The buffer (``_buf``), what was consumed of the current block (``_raw``, given back as text when
    the block turns out not to be one) and the output list (``_out``)."""

    def __init__(self, trigger: str) -> None:
        self._trigger = trigger
        self._buf = ""
        self._out: list[BridgeOutput] = []
        self._eof = False
        self._state = State.TEXT
        self._lines = LineTracker()
        self._raw = ""
        self._fenced = False

    def _take(self) -> list[BridgeOutput]:
        out, self._out = self._out, []
        return out

    def _emit_text(self, text: str) -> None:
        if not text:
            return
        if self._out and isinstance(self._out[-1], TextOut):
            self._out[-1] = TextOut(self._out[-1].text + text)
        else:
            self._out.append(TextOut(text))
        self._lines.update(text)

    def _end_block(self) -> bool:
        self._state = State.AFTER if self._fenced else State.TEXT
        self._raw = ""
        return True

    def _abort(self) -> bool:
        """Not a tool call after all: give back what was taken as markup, as text."""
        self._emit_text(self._raw)
        self._raw = ""
        self._fenced = False
        self._state = State.TEXT
        return True

    def _consume(self, count: int) -> str:
        piece, self._buf = self._buf[:count], self._buf[count:]
        self._raw += piece
        return piece

    def _skip_space(self) -> object | None:
        """Skip whitespace and stray triggers; :data:`WAIT` when the buffer ends before anything else."""
        while True:
            stripped = self._buf.lstrip()
            self._consume(len(self._buf) - len(stripped))
            if self._trigger and stripped.startswith(self._trigger):
                self._buf = stripped[len(self._trigger) :]
                continue
            if not stripped or (self._trigger.startswith(stripped) and self._trigger and not self._eof):
                return WAIT
            return None

    def _read_tag(self) -> Tag | object | None:
        """The complete tag the buffer starts with, :data:`WAIT` if it may still become one, else None."""
        buf = self._buf
        end = buf.find(">", 1, MAX_TAG)
        if buf.find("<", 1, MAX_TAG if end < 0 else end) >= 0:
            return None
        if end < 0:
            return None if self._eof or len(buf) >= MAX_TAG else WAIT
        match = TAG.fullmatch(buf, 0, end + 1)
        return tag_of(match) if match else None
