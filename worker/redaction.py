"""Keeping credentials out of upstream texts before they are relayed to a client or written to a log.

Upstreams echo what they were sent: an OpenAI-style 401 says "Incorrect API key provided: sk-…", a proxy
may repeat the whole ``Authorization`` header. Such text would reach the client's error body, the
worker's log lines and the cooldown reason the admin API shows. :func:`scrub` replaces anything shaped
like a credential (bearer tokens, ``sk-…`` and ``sk-ant-…`` keys, ``key=value`` pairs naming a secret),
and the channel's own keys verbatim whatever their shape, with ``[redacted]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ("REDACTED", "scrub")

REDACTED = "[redacted]"

_SHAPES = re.compile(
    r"(?i)"
    r"(?P<bearer>\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{6,}"
    r"|\bsk-(?:ant-)?[A-Za-z0-9_-]{6,}"
    r"|(?P<label>\b(?:api[_-]?key|access[_-]?token|secret|password|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{4,}"
)


def _replace(match: re.Match[str]) -> str:
    return (match.group("bearer") or match.group("label") or "") + REDACTED


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the given secrets and anything shaped like a credential replaced by ``[redacted]``."""
    # Longest first, so a key that contains another is replaced whole.
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _SHAPES.sub(_replace, text)
