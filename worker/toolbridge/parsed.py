"""What the response parser yields: pieces of plain text, and the tool calls it read out of the text."""

from __future__ import annotations

import msgspec

__all__ = ("BridgeOutput", "ParsedCall", "TextOut")


class TextOut(msgspec.Struct, frozen=True):
    text: str


class ParsedCall(msgspec.Struct, frozen=True):
    name: str
    arguments_json: str
    """A compact JSON object."""
    truncated: bool = False
    """The output ended inside this call; the last argument may be incomplete."""


BridgeOutput = TextOut | ParsedCall
