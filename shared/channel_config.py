"""Channels and accounts: the upstream endpoints a gateway routes to, and the credentials each one uses.

A channel is one upstream endpoint with its provider type (the ``type`` tag), the models it serves,
and how the router treats it (priority, weight, concurrency, cooldown). Its accounts are credentials
used in rotation; a channel without an ``accounts`` list has one implicit account made of its own
``api_key`` / ``api_key_env``. The same structs are read from the config file and, through the admin
API, stored in Redis, so both sources are validated alike.
"""

from __future__ import annotations

import os
from typing import Literal

import msgspec

__all__ = (
    "Account",
    "AccountConfig",
    "AnthropicChannel",
    "ChannelConfig",
    "ChaynsChannel",
    "HttpChannel",
    "MockChannel",
    "ModelAlias",
    "OpenAIChannel",
    "ResponsesChannel",
)


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ModelAlias(_Section, frozen=True, kw_only=True):
    name: str
    """The model name clients use."""
    upstream: str
    """The model name sent to the upstream."""


class Account(msgspec.Struct, frozen=True):
    """Resolved credentials: what a provider call is made with."""

    name: str
    api_key: str | None = None


class AccountConfig(_Section, frozen=True, kw_only=True):
    name: str
    api_key: str | None = None
    api_key_env: str | None = None
    """Read the key from this environment variable instead of the file."""
    enabled: bool = True

    def resolve(self) -> Account | None:
        """The account's credentials, or ``None`` when it is disabled or its key variable is unset."""
        if not self.enabled:
            return None
        if self.api_key is not None:
            return Account(self.name, self.api_key)
        if self.api_key_env is None:
            return Account(self.name)
        # An empty variable (compose's "${KEY:-}") means no key, not an empty one.
        key = os.environ.get(self.api_key_env) or None
        return Account(self.name, key) if key else None


class _Channel(_Section, tag_field="type", frozen=True, kw_only=True):
    name: str
    models: list[str | ModelAlias]
    enabled: bool = True
    priority: int = 0
    """Lower is tried first when several channels serve a model."""
    weight: int = 1
    """Share of the traffic among channels of equal priority."""
    max_concurrency: int = 0
    """Generations running on this channel at once, across all workers; 0 is unlimited."""
    cooldown_s: float | None = None
    """How long an account that failed is skipped; ``None`` is ``[routing] cooldown_s``."""
    error_texts: list[str] = msgspec.field(default_factory=list)
    """Replies that are really upstream errors, compared whole (trimmed): such a reply is retried."""
    tool_mode: Literal["native", "bridge"] = "native"
    """``bridge``: the models cannot call tools natively; tools go through the XML text bridge."""
    tool_client: Literal["auto", "generic", "openai_sdk", "cline", "roo", "kilo"] = "auto"
    """Bridge only: treat every client as this one; ``auto`` tells it from the request headers."""
    tool_validation: Literal["auto", "none", "relaxed", "strict"] = "auto"
    """Bridge only: how bridged calls are checked against the tools' schemas; ``auto`` is the client's way
    (``relaxed`` for all known clients)."""
    tool_fallback: Literal["auto", "discard", "attempt_completion", "read_file"] = "auto"
    """Bridge only: what replaces a turn's calls when none was valid; ``auto`` is the client's way
    (``attempt_completion`` for Cline, Roo Code and Kilo Code, else ``discard``)."""

    def model_map(self) -> dict[str, str]:
        """Client model name → upstream model name."""
        return {m: m for m in self.models if isinstance(m, str)} | {
            m.name: m.upstream for m in self.models if isinstance(m, ModelAlias)
        }

    def credential_configs(self) -> list[AccountConfig]:
        return [AccountConfig(name="default")]

    def resolved_accounts(self) -> list[Account]:
        """The usable accounts, in rotation order."""
        return [account for config in self.credential_configs() if (account := config.resolve()) is not None]


class HttpChannel(_Channel, frozen=True, kw_only=True):
    base_url: str
    api_key: str | None = None
    api_key_env: str | None = None
    accounts: list[AccountConfig] = msgspec.field(default_factory=list)
    """Credentials used in rotation; when empty, ``api_key`` / ``api_key_env`` make the only account."""
    timeout_s: float = 120.0
    """Longest silence from the upstream once connected."""
    connect_timeout_s: float = 5.0
    max_connections: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def credential_configs(self) -> list[AccountConfig]:
        if self.accounts:
            return self.accounts
        return [AccountConfig(name="default", api_key=self.api_key, api_key_env=self.api_key_env)]

    def resolved_api_key(self) -> str | None:
        """The first usable account's key."""
        accounts = self.resolved_accounts()
        return accounts[0].api_key if accounts else None


class OpenAIChannel(HttpChannel, tag="openai", frozen=True, kw_only=True):
    """Any upstream that speaks OpenAI Chat Completions."""


class ResponsesChannel(HttpChannel, tag="openai_responses", frozen=True, kw_only=True):
    """An upstream that speaks the OpenAI Responses API (``POST {base_url}/responses``)."""


class AnthropicChannel(HttpChannel, tag="anthropic", frozen=True, kw_only=True):
    """Anthropic's Messages API (``POST {base_url}/v1/messages``)."""

    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    max_tokens: int = 4096
    """Sent when the client sets no limit: the Messages API requires one."""


class ChaynsChannel(HttpChannel, tag="chayns", frozen=True, kw_only=True):
    """chayns' intercom threads: a thread per conversation, the reply polled until it arrives.

    Account keys are chayns access tokens. The models' agent ``personId``s come from the model catalog.
    """

    base_url: str = "https://cube.tobit.cloud"
    """Hosts the thread, catalog and image endpoints."""
    auth_url: str = "https://auth.chayns.net"
    """Where an account's own ``personId`` is looked up."""
    poll_interval_s: float = 0.1
    reply_timeout_s: float = 300.0
    """How long to wait for the agent's reply before failing with a timeout."""
    thread_type: int = 8
    tool_mode: Literal["native", "bridge"] = "bridge"


class MockChannel(_Channel, tag="mock", frozen=True, kw_only=True):
    """A deterministic local model for demos, tests and benchmarks."""

    first_token_ms: float = 0.0
    tokens_per_second: float = 0.0
    """0 means as fast as possible."""
    reply: str = "This is a deterministic reply from the aiapi mock model."
    """Tokens of the reply are its words; ``{prompt}`` is replaced by the last user message."""


ChannelConfig = OpenAIChannel | ResponsesChannel | AnthropicChannel | ChaynsChannel | MockChannel
