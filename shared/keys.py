"""Every Redis key and pub/sub topic the gateway uses, in one place.

"Channel" always means an upstream channel of the config; a pub/sub channel is called a topic here.

Keys that one Lua script or one transaction touches together share a hash tag, so that each such call
stays in a single Redis Cluster slot: per generation ``{<generation id>}`` (its queued job, lease, cancel
flag and event log; a stored response's record too, as its generation id is the response id), per
session, per API key, per channel. The queue's keys share ``{queue}``. The enqueue writes to both a
generation's slot and the queue's, so it is a pipeline of single-slot commands, ordered so that any part
of it alone is harmless (see :mod:`shared.queue`).
"""

from __future__ import annotations

__all__ = (
    "CANCEL_TOPIC",
    "CHANNELS_CHANGED",
    "COOLDOWN_TOPIC",
    "JOB_FUNCTION",
    "LEDGER_GROUP",
    "LEDGER_MIGRATION_LOCK",
    "LEDGER_STREAM",
    "PRICES",
    "PRICES_CHANGED",
    "QUEUE",
    "READY",
    "WORKER_HEALTH",
    "AccessKeys",
    "ChannelKeys",
    "ConsoleKeys",
    "GenerationKeys",
    "ResponseKeys",
    "SessionKeys",
    "binding_key",
    "presence_key",
    "relay_topic",
)

PREFIX = "aiapi"

_QUEUE_TAG = f"{PREFIX}:{{queue}}"

QUEUE = f"{_QUEUE_TAG}:jobs"
"""The arq queue: a sorted set of the ids of generations waiting for a worker (their jobs are
:attr:`GenerationKeys.job`). Timer polls read it, for jobs whose wake-up no worker took."""

WORKER_HEALTH = f"{_QUEUE_TAG}:health-check"
"""arq's health-check key: every live worker refreshes it at least every ``health_check_interval``."""

JOB_FUNCTION = "generate"
"""The name of the arq job function that runs one generation."""

READY = f"{_QUEUE_TAG}:ready"
"""List: the id of every job just enqueued, popped by one worker with a free slot, which claims the job
at once instead of at its next poll. A wake-up for one worker, where a broadcast would have every worker
try to claim every job."""

CANCEL_TOPIC = f"{PREFIX}:cancel"
"""Carries generation ids to cancel; the durable cancel flag is :attr:`GenerationKeys.cancel`."""


COOLDOWN_TOPIC = f"{PREFIX}:cooldown"
"""Carries every account cooldown a worker starts, so the other workers skip that account too."""

CHANNELS_CHANGED = f"{PREFIX}:channels-changed"
"""Published after the admin API changed the stored channels; every process reloads them."""

LEDGER_STREAM = f"{PREFIX}:{{ledger}}:records"
"""Stream: one encoded ``LedgerRecord`` per ended generation (field ``r``), trimmed to about
``[ledger] stream_max_len``; the recorder drains it into the database."""

LEDGER_GROUP = "recorders"
"""The consumer group of :data:`LEDGER_STREAM`: every recorder reads in it, so each record goes to one."""

LEDGER_MIGRATION_LOCK = f"{PREFIX}:{{ledger}}:migrating"
"""Lock held while a process migrates the ledger's schema."""

PRICES = f"{PREFIX}:{{prices}}:book"
"""Hash: model name → encoded ``Price`` set through the admin API, over the config's price table."""

PRICES_CHANGED = f"{PREFIX}:prices-changed"
"""Published after the admin API changed :data:`PRICES`; every worker reloads them."""


def relay_topic(instance_id: str) -> str:
    """The pub/sub topic on which one API instance receives the events of its generations."""
    return f"{PREFIX}:relay:{instance_id}"


def presence_key(reply_topic: str) -> str:
    """String with a TTL: present while the API instance listening on ``reply_topic`` is alive."""
    return f"{reply_topic}:alive"


class GenerationKeys:
    """Keys of one generation, all in the generation's own cluster slot."""

    __slots__ = ("cancel", "events", "job", "lease")

    def __init__(self, generation_id: str) -> None:
        tag = f"{PREFIX}:{{{generation_id}}}"
        self.job = f"{tag}:job"
        """String: the queued job (arq's format, msgpack), until a worker claims it or it expires."""
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
    """Keys of one conversation, all in the session's own cluster slot.

    A session belongs to its owner (the client's identity): the keys are named by owner and id together,
    so an id that another client presents (say, by resending a reply with its zero-width marker) names
    that client's own, new session and can never join, block or cancel the owner's runs.
    """

    __slots__ = ("_tag", "fence", "gate")

    def __init__(self, owner: str, session_id: str) -> None:
        self._tag = tag = f"{PREFIX}:{{{owner}:{session_id}}}"
        self.gate = f"{tag}:gate"
        """String: the id of the generation allowed to run in the session now, with a TTL it renews."""
        self.fence = f"{tag}:fence"
        """Counter: incremented by every admission, so a later run always holds a higher token."""

    def provider_state(self, channel: str) -> str:
        """String: what the provider of ``channel`` keeps between turns (say, its upstream thread)."""
        return f"{self._tag}:state:{channel}"


def binding_key(owner: str, fingerprint: str) -> str:
    """String: the session a reply with this fingerprint belongs to (hash-mode session tracking)."""
    return f"{PREFIX}:reply:{owner}:{fingerprint}"


class ChannelKeys:
    """Keys about channels: the admin API's stored channels, and per-channel running state."""

    book = f"{PREFIX}:{{channels}}:book"
    """Hash: channel name → encoded ``StoredChannel`` (a channel added or changed at runtime, or removed)."""
    version = f"{PREFIX}:{{channels}}:version"
    """Counter: incremented with every change to :attr:`book`, in the same transaction."""

    @staticmethod
    def running(channel: str) -> str:
        """Sorted set: generations running on ``channel`` (score: when their claim expires, in ms)."""
        return f"{PREFIX}:{{channel:{channel}}}:running"

    @staticmethod
    def health(channel: str, account: str) -> str:
        """String: why ``account`` of ``channel`` is cooling down; it expires with the cooldown."""
        return f"{PREFIX}:{{channel:{channel}}}:health:{account}"


class AccessKeys:
    """Keys about API keys: the admin API's stored keys, and each key's limits and usage.

    The stored keys share the slot ``{access}``; everything about one key shares the slot ``{key:<name>}``,
    so the rate-limit script and the usage transaction each touch a single Redis Cluster slot.
    """

    records = f"{PREFIX}:{{access}}:records"
    """Hash: SHA-256 hex digest of a key → encoded ``StoredKey`` (the O(1) look-up of a request's key)."""
    names = f"{PREFIX}:{{access}}:names"
    """Hash: key name → digest, so the admin API can address a key by name."""

    __slots__ = ("requests", "requests_total", "spent", "spent_usd", "tokens", "tokens_total", "usage")

    def __init__(self, name: str) -> None:
        tag = f"{PREFIX}:{{key:{name}}}"
        self.requests = f"{tag}:requests"
        """Hash: unix second → requests admitted in it; only the last minute is kept."""
        self.tokens = f"{tag}:tokens"
        """Hash: unix second → tokens (input + output) reported in it; only the last minute is kept."""
        self.requests_total = f"{tag}:requests:total"
        """Hash: ``sum`` of the request buckets and ``from``, the oldest second not yet evicted from them."""
        self.tokens_total = f"{tag}:tokens:total"
        """Hash: the same for the token buckets."""
        self.spent = f"{tag}:spent"
        """Counter: tokens used over the key's life, checked against its budget."""
        self.spent_usd = f"{tag}:spent-usd"
        """Hash: ``total`` and ``YYYY-MM`` (UTC month) → micro-dollars spent, checked against its budgets."""
        self.usage = f"{tag}:usage"
        """Hash: ``<metric>:<model>`` → total, for requests, errors, input, output and cached tokens."""


class ConsoleKeys:
    """Keys of the operator's console: its sessions, one-time login links and failed-login counters.

    Each is touched alone (one command or one single-key transaction), so each has its own slot.
    """

    @staticmethod
    def session(token_digest: str) -> str:
        """String with a TTL: the encoded ``ConsoleSession`` behind a session cookie (keyed by its digest)."""
        return f"{PREFIX}:{{console:{token_digest}}}:session"

    @staticmethod
    def login_link(token_digest: str) -> str:
        """String with a TTL: present until the one-time login link with this token's digest is used."""
        return f"{PREFIX}:{{console:{token_digest}}}:login-link"

    @staticmethod
    def failures(client: str) -> str:
        """Counter with a TTL: wrong admin keys sent from ``client`` (an IP address) in the current window."""
        return f"{PREFIX}:{{console-failures:{client}}}:count"
