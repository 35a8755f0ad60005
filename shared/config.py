"""Settings: one TOML file plus a few environment variables, validated once at start.

Nothing reads the environment at import time. :func:`load_settings` builds one immutable
:class:`Settings`, which each role receives explicitly. Unknown keys are errors, so a misspelled
setting fails loudly instead of being ignored.

Environment variables: ``AIAPI_CONFIG`` (path of the TOML file), ``REDIS_URL``, ``AIAPI_HOST``,
``AIAPI_PORT``. A channel's API key is read from the variable its ``api_key_env`` names.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = (
    "ChannelConfig",
    "ConfigError",
    "MockChannel",
    "ModelAlias",
    "OpenAIChannel",
    "RedisConfig",
    "RelayConfig",
    "ResponsesConfig",
    "ServerConfig",
    "SessionsConfig",
    "Settings",
    "WorkerConfig",
    "load_settings",
)


class ConfigError(Exception):
    """The configuration is invalid; the message says where and why."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024


class RedisConfig(_Section, frozen=True, kw_only=True):
    url: str | None = None
    """``None``: ``aiapi up`` starts an embedded Redis; the ``api`` and ``worker`` roles require a URL."""
    data_dir: str = ".aiapi"
    """Where the embedded Redis keeps its append-only file."""


class WorkerConfig(_Section, frozen=True, kw_only=True):
    max_jobs: int = 200
    """Generations one worker process runs at once."""
    poll_delay_s: float = 0.25
    """Fallback polling interval; a wake-up published on enqueue normally starts jobs at once."""
    lease_ttl_s: float = 10.0
    """How long a generation's lease outlives a silent worker; it is renewed every third of it."""
    job_timeout_s: float = 900.0
    """Hard ceiling on one generation."""
    shutdown_grace_s: int = 20
    """On SIGTERM, how long running generations may finish before they are cancelled."""


class RelayConfig(_Section, frozen=True, kw_only=True):
    event_ttl_s: int = 3600
    """How long a generation's event log is kept after its last event."""
    queue_timeout_s: float = 30.0
    """How long a request may wait for a worker before it fails with 503."""
    idle_check_s: float = 1.0
    """With no event for this long, the API checks the log for gaps and the worker for liveness."""
    keepalive_s: float = 15.0
    """Interval of SSE keep-alive comments while nothing else is sent."""


class ResponsesConfig(_Section, frozen=True, kw_only=True):
    store_ttl_s: int = 7 * 24 * 3600
    """How long a stored response (and the event log it is replayed from) is kept."""
    background_queue_timeout_s: float = 600.0
    """How long a background response may wait for a worker before it fails."""


class SessionsConfig(_Section, frozen=True, kw_only=True):
    mode: Literal["hash", "zero_width"] = "hash"
    """How a request is matched to its conversation (see ``shared/sessions.py``)."""
    ttl_s: int = 24 * 3600
    """How long a session is remembered after its last turn."""
    concurrency: Literal["reject", "cancel_previous", "allow"] = "reject"
    """A request arriving while another runs in its session: 409, take over, or run both. A request
    may choose with the ``x-aiapi-concurrency`` header."""


class ModelAlias(_Section, frozen=True, kw_only=True):
    name: str
    """The model name clients use."""
    upstream: str
    """The model name sent to the upstream."""


class _Channel(_Section, tag_field="type", frozen=True, kw_only=True):
    name: str
    models: list[str | ModelAlias]
    priority: int = 0
    """Lower runs first when several channels serve a model."""
    tool_mode: Literal["native", "bridge"] = "native"
    """``bridge``: the models cannot call tools natively; tools go through the XML text bridge."""

    def model_map(self) -> dict[str, str]:
        """Client model name → upstream model name."""
        return {m: m for m in self.models if isinstance(m, str)} | {
            m.name: m.upstream for m in self.models if isinstance(m, ModelAlias)
        }


class OpenAIChannel(_Channel, tag="openai", frozen=True, kw_only=True):
    """Any upstream that speaks OpenAI Chat Completions."""

    base_url: str
    api_key_env: str | None = None
    api_key: str | None = None
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    max_connections: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key
        # An empty variable (compose's "${KEY:-}") means no key, not an empty one.
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None


class MockChannel(_Channel, tag="mock", frozen=True, kw_only=True):
    """A deterministic local model for demos, tests and benchmarks."""

    first_token_ms: float = 0.0
    tokens_per_second: float = 0.0
    """0 means as fast as possible."""
    reply: str = "This is a deterministic reply from the aiapi mock model."
    """Tokens of the reply are its words; ``{prompt}`` is replaced by the last user message."""


ChannelConfig = OpenAIChannel | MockChannel


def _default_channels() -> list[ChannelConfig]:
    return [MockChannel(name="mock", models=["mock-1"])]


class Settings(_Section, frozen=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    relay: RelayConfig = msgspec.field(default_factory=RelayConfig)
    responses: ResponsesConfig = msgspec.field(default_factory=ResponsesConfig)
    sessions: SessionsConfig = msgspec.field(default_factory=SessionsConfig)
    channels: list[ChannelConfig] = msgspec.field(default_factory=_default_channels)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (``path``, else ``$AIAPI_CONFIG``, else none), apply the environment, validate."""
    env = os.environ if environ is None else environ
    location = Path(path) if path is not None else (Path(env["AIAPI_CONFIG"]) if env.get("AIAPI_CONFIG") else None)
    raw: dict[str, Any] = {}
    if location is not None:
        try:
            raw = tomllib.loads(location.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {location}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{location}: invalid TOML: {exc}") from exc
    _apply_environment(raw, env)
    source = str(location) if location is not None else "configuration"
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}".replace("`$.", "`")) from exc
    _check(settings, source)
    return settings


def _apply_environment(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    overrides = {("redis", "url"): "REDIS_URL", ("server", "host"): "AIAPI_HOST", ("server", "port"): "AIAPI_PORT"}
    for (section, key), variable in overrides.items():
        if env.get(variable):
            raw.setdefault(section, {})[key] = env[variable]


def _check(settings: Settings, source: str) -> None:
    names = [channel.name for channel in settings.channels]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate channel names: {', '.join(duplicates)}")
    for channel in settings.channels:
        if not channel.models:
            raise ConfigError(f"{source}: channel '{channel.name}' lists no models")
        if isinstance(channel, OpenAIChannel) and not channel.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: channel '{channel.name}': base_url must start with http:// or https://")
    if not 0 < settings.server.port < 65536:
        raise ConfigError(f"{source}: server.port must be between 1 and 65535")
    if settings.worker.lease_ttl_s < 1:
        raise ConfigError(f"{source}: worker.lease_ttl_s must be at least 1 second")
