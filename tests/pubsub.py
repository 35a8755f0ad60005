"""Test helper for reading Redis pub/sub."""

from __future__ import annotations

from typing import Any


async def next_message(pubsub: Any) -> dict[str, Any]:
    """The next published message, skipping subscription confirmations."""
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            return message  # type: ignore[no-any-return]
    raise AssertionError("no message published")
