"""Cleans model text on its way to a client: characters no client should receive, and, for agents that
read XML tool tags out of the text (Cline, Roo Code, Kilo Code), tool tags models commonly misspell.

Only illegal characters are removed: C0 controls other than tab, line feed and carriage return, DEL, the
C1 controls, lone surrogates and U+FFFE/U+FFFF. Every other character, CJK, emoji and accents included,
is kept; a surrogate pair that arrives as two code points is joined into the character it encodes.
"""

from __future__ import annotations

import re

from worker.toolbridge.clients import ClientKind, profile_for

__all__ = ("OutputSanitizer", "strip_illegal_characters")

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_TYPOS = {
    "write_file": "write_to_file",
    "write": "write_to_file",
    "read": "read_file",
    "list_dir": "list_files",
    "list_file": "list_files",
    "run_command": "execute_command",
    "search_file": "search_files",
    "attempt_complete": "attempt_completion",
    "ask_follow_up_question": "ask_followup_question",
}
_TYPO_TAG = re.compile(rf"<\s{{0,4}}(/?)\s{{0,4}}({'|'.join(sorted(_TYPOS, key=len, reverse=True))})\s{{0,4}}>")
_MAX_TYPO_TAG = 48


def _join_pair(match: re.Match[str]) -> str:
    return match.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def strip_illegal_characters(text: str) -> str:
    """Remove the characters no client should receive; keep every valid character."""
    return _ILLEGAL.sub("", _PAIR.sub(_join_pair, text))


def _fix_typo(match: re.Match[str]) -> str:
    return f"<{match.group(1)}{_TYPOS[match.group(2)]}>"


class OutputSanitizer:
    """:meth:`clean` for a whole text; :meth:`feed` and :meth:`flush` for a stream, which hold back only
    what could still become a misspelt tag or half of a surrogate pair, and give the same result."""

    def __init__(self, kind: ClientKind = "generic", *, fix_tag_typos: bool | None = None) -> None:
        self.fix_tag_typos = profile_for(kind).fix_tag_typos if fix_tag_typos is None else fix_tag_typos
        self._high = ""
        self._pending = ""

    def clean(self, text: str) -> str:
        return self._fix(strip_illegal_characters(text))

    def _fix(self, text: str) -> str:
        return _TYPO_TAG.sub(_fix_typo, text) if self.fix_tag_typos else text

    def feed(self, chunk: str) -> str:
        raw, self._high = self._high + chunk, ""
        if raw and "\ud800" <= raw[-1] <= "\udbff":
            raw, self._high = raw[:-1], raw[-1]
        text = self._pending + strip_illegal_characters(raw)
        hold = len(text)
        if self.fix_tag_typos:
            start = text.rfind("<", max(0, hold - _MAX_TYPO_TAG))
            if start >= 0 and ">" not in text[start:]:
                hold = start
        self._pending = text[hold:]
        return self._fix(text[:hold])

    def flush(self) -> str:
        text = self._pending + strip_illegal_characters(self._high)
        self._pending = self._high = ""
        return self._fix(text)
