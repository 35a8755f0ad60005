"""Every Redis key and channel name the gateway uses, in one place.

Per-generation keys share the hash tag ``{<generation id>}`` so that each Lua script touches a single
Redis Cluster slot. A stored response's generation id is the response id, so its record and its event
log share one slot too. arq's own keys (``arq:job:<id>``, ``arq:in-progress:<id>`` …) are named by arq.
"""

from __future__ import annotations

__all__ = (
    "CANCEL_CHANNEL",
    "JOB_FUNCTION",
    "QUEUE",
    "WAKE_CHANNEL",
    "GenerationKeys",
    "ResponseKeys",
    "SessionKeys",
    "binding_key",
    "relay_channel",
)

PREFIX = "aiapi"

QUEUE = f"{PREFIX}:queue"
"""The arq queue (a sorted set) that generation jobs are enqueued on."""

JOB_FUNCTION = "generate"
"""The name of the arq job function that runs one generation."""

WAKE_CHANNEL = f"{PREFIX}:wake"
"""Carries the id of every job enqueued, so a worker starts it at once instead of at its next poll."""

CANCEL_CHANNEL = f"{PREFIX}:cancel"
"""Carries generation ids to cancel; the durable cancel flag is :attr:`GenerationKeys.cancel`."""


def relay_channel(instance_id: str) -> str:
    """The pub/sub channel on which one API instance receives the events of its generations."""
    return f"{PREFIX}:relay:{instance_id}"


class GenerationKeys:
    """Keys of one generation, all in the generation's own cluster slot."""

    __slots__ = ("cancel", "events", "lease")

    def __init__(self, generation_id: str) -> None:
        tag = f"{PREFIX}:{{{generation_id}}}"
        self.events = f"{tag}:events"
        """Stream: the generation's event log; entry ids are ``0-<seq + 1>``."""
        self.lease = f"{tag}:lease"
        """String: the token of the worker running it, with a TTL the worker keeps renewing."""
        self.cancel = f"{tag}:cancel"
        """String: present once someone asked to cancel the generation."""


class ResponseKeys(GenerationKeys):
    """Keys of a stored Responses API response: its generation's keys plus the record."""

    __slots__ = ("record",)

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id)
        self.record = f"{PREFIX}:{{{response_id}}}:response"
        """String: the encoded ``StoredResponse`` (owner, echoed request fields, conversation, input items)."""


class SessionKeys:
    """Keys of one conversation, all in the session's own cluster slot."""

    __slots__ = ("fence", "gate")

    def __init__(self, session_id: str) -> None:
        tag = f"{PREFIX}:{{{session_id}}}"
        self.gate = f"{tag}:gate"
        """String: the id of the generation allowed to run in the session now, with a TTL it renews."""
        self.fence = f"{tag}:fence"
        """Counter: incremented by every admission, so a later run always holds a higher token."""


def binding_key(owner: str, fingerprint: str) -> str:
    """String: the session a reply with this fingerprint belongs to (hash-mode session tracking)."""
    return f"{PREFIX}:reply:{owner}:{fingerprint}"
