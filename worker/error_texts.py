"""Upstream errors that arrive as a reply: held back until the reply can no longer be one.

Some upstreams (chayns among them) answer a failure with an ordinary message such as "An error has
occurred. Please try again later." A channel lists such texts; a reply that is exactly one of them
(trimmed) is an error and is retried like a 5xx. The start of every reply is held back only while it
is still a prefix of a listed text, so normal replies stream on at once.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ("ErrorTextGuard",)


class ErrorTextGuard:
    def __init__(self, texts: Sequence[str]) -> None:
        self._texts = [text.strip() for text in texts if text.strip()]
        self._held: list[str] = []
        self._passing = not self._texts

    def feed(self, text: str) -> str:
        """The part of ``text`` that may go to the client now."""
        if self._passing:
            return text
        self._held.append(text)
        held = "".join(self._held).strip()
        if any(candidate.startswith(held) for candidate in self._texts):
            return ""
        return self.release()

    def release(self) -> str:
        """Stop guarding (the reply is not an error text, or other output arrived) and hand back what was held."""
        self._passing = True
        held, self._held = "".join(self._held), []
        return held

    def matched(self) -> str | None:
        """At the end of the reply: the error text the whole reply equals, if any."""
        if self._passing:
            return None
        held = "".join(self._held).strip()
        return held if held in self._texts else None
