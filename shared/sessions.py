"""Recognising a conversation across requests: fingerprints, and session ids hidden in zero-width text.

Two ways to know that a request continues an earlier one:

* **hash**: a worker that finishes a turn binds the *fingerprint* of the reply it produced to the
  session. The client echoes that reply back as the last assistant message of its next request, so
  the API finds the session by that message alone. That survives tool-call turns (a tool-call reply is
  fingerprinted by its call ids, which clients echo verbatim), zero-width characters (stripped before
  hashing) and clients that drop their oldest turns (only the last reply matters).
* **zero_width**: the worker appends the session id to each reply, encoded in invisible characters;
  the API reads it back from the history and strips every such character before anything goes upstream.
"""

from __future__ import annotations

import hashlib
import os
import re

import msgspec

from shared.generation import Message, TextPart

__all__ = (
    "decode_zero_width",
    "encode_zero_width",
    "fingerprint",
    "fingerprint_of",
    "history_key",
    "new_session_id",
    "strip_messages",
    "strip_zero_width",
    "turn_fingerprint",
)


_SYMBOLS = "\u200b\u200c\u200d\u2060"
"""Two bits per symbol, most significant pair first."""
_OPEN = "\u2062\u2063"
_CLOSE = "\u2063\u2062"
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\u2062\u2063\ufeff]")
_MARKED = re.compile(f"{_OPEN}([{_SYMBOLS}]+){_CLOSE}")
_SPACE = re.compile(r"\s+")


def new_session_id() -> str:
    return "sess_" + os.urandom(12).hex()


def encode_zero_width(session_id: str) -> str:
    symbols = (_SYMBOLS[(byte >> shift) & 3] for byte in session_id.encode() for shift in (6, 4, 2, 0))
    return _OPEN + "".join(symbols) + _CLOSE


def decode_zero_width(text: str) -> str | None:
    """The last session id hidden in ``text``, or ``None``."""
    for payload in reversed(_MARKED.findall(text)):
        if len(payload) % 4:
            continue
        values = [_SYMBOLS.index(symbol) for symbol in payload]
        data = bytes((a << 6) | (b << 4) | (c << 2) | d for a, b, c, d in zip(*[iter(values)] * 4, strict=True))
        try:
            return data.decode()
        except UnicodeDecodeError:
            continue
    return None


def strip_zero_width(text: str) -> str:
    return _INVISIBLE.sub("", text)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def fingerprint(text: str, call_ids: list[str]) -> str:
    """The fingerprint of one assistant reply, from its text or, if it called tools, its call ids."""
    if call_ids:
        return _digest("calls", *sorted(call_ids))
    # Clients re-send replies with trimmed or re-wrapped whitespace; the words are what identify it.
    return _digest("text", _SPACE.sub(" ", strip_zero_width(text)).strip())


def fingerprint_of(message: Message) -> str:
    return fingerprint(message.text(), [call.id for call in message.tool_calls])


def turn_fingerprint(before: Message, reply: Message) -> str:
    """Identifies one turn by the reply and the message it answered, which clients echo back together."""
    return fingerprint_of(before) + fingerprint_of(reply)


def history_key(owner: str, messages: list[Message]) -> str:
    """A deterministic session id for a history nobody bound: same conversation, same id."""
    parts = [owner]
    for message in messages:
        parts += (message.role, fingerprint_of(message))
    return "sess_" + _digest(*parts)[:24]


def strip_messages(messages: list[Message]) -> list[Message]:
    """The messages with every zero-width character removed from their text."""
    cleaned = []
    for message in messages:
        content = [
            msgspec.structs.replace(p, text=strip_zero_width(p.text)) if isinstance(p, TextPart) else p
            for p in message.content
        ]
        cleaned.append(msgspec.structs.replace(message, content=content))
    return cleaned
