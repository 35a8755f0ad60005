"""Whether the API instance a generation replies to is still there (see :mod:`api.delivery.presence`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared.keys import presence_key

if TYPE_CHECKING:
    from shared.batching import RedisBatcher

__all__ = ("ApiPresence",)

_ASKED_S = 1.0
"""One question per instance per second at most, however many of its generations run here."""


class ApiPresence:
    def __init__(self, redis: RedisBatcher) -> None:
        self._redis = redis
        self._answers: dict[str, tuple[float, bool]] = {}

    async def alive(self, reply_topic: str) -> bool:
        now = time.monotonic()
        answer = self._answers.get(reply_topic)
        if answer is not None and now - answer[0] < _ASKED_S:
            return answer[1]
        alive = bool(await self._redis.command("EXISTS", presence_key(reply_topic)))
        if len(self._answers) > 1000:  # instances come and go: forget the old ones now and then
            self._answers = {topic: seen for topic, seen in self._answers.items() if now - seen[0] < _ASKED_S}
        self._answers[reply_topic] = (now, alive)
        return alive
