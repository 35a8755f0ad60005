"""Settings: one TOML file plus a few environment variables, validated once at start.

Nothing reads the environment at import time. :func:`load_settings` builds one immutable
:class:`Settings`, which each role receives explicitly. Unknown keys are errors, so a misspelled
setting fails loudly instead of being ignored.

Environment variables: ``AIAPI_CONFIG`` (path of the TOML file), ``REDIS_URL``, ``AIAPI_HOST``,
``AIAPI_PORT``, ``AIAPI_LOG_FORMAT``, ``AIAPI_WORKER_METRICS_PORT``, ``DATABASE_URL``. A channel's API
key is read from the variable its ``api_key_env`` names.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from shared.access_config import AccessConfig
from shared.channel_config import (
    Account,
    AccountConfig,
    AnthropicChannel,
    ChannelConfig,
    ChaynsChannel,
    HttpChannel,
    MockChannel,
    ModelAlias,
    OpenAIChannel,
    ResponsesChannel,
)
from shared.ledger_config import DatabaseConfig, LedgerConfig, Price

__all__ = (
    "AccessConfig",
    "Account",
    "AccountConfig",
    "AdminConfig",
    "AnthropicChannel",
    "ChannelConfig",
    "ChaynsChannel",
    "ConfigError",
    "DatabaseConfig",
    "HttpChannel",
    "LedgerConfig",
    "LimitsConfig",
    "MockChannel",
    "ModelAlias",
    "OpenAIChannel",
    "Price",
    "RedisConfig",
    "RelayConfig",
    "ResponsesChannel",
    "ResponsesConfig",
    "RoutingConfig",
    "ServerConfig",
    "SessionsConfig",
    "Settings",
    "TracingConfig",
    "WorkerConfig",
    "channel_problem",
    "load_settings",
    "redis_problem",
)


class ConfigError(Exception):
    """The configuration is invalid; the message says where and why."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024
    max_body_bytes_in_flight: int = 256 * 1024 * 1024
    """Bytes of request bodies one API process holds at once; a body past it gets a quick 503."""
    header_timeout_s: float = 10.0
    """A request's line and headers must arrive within this, from the connection's opening or the
    request's first byte; otherwise the connection is closed."""
    body_timeout_s: float = 60.0
    """A request's whole body must arrive within this after its headers (10 MB: 170 kB/s), else 408."""
    keepalive_timeout_s: float = 5.0
    """An idle connection between two requests is closed after this."""
    max_connections: int = 1024
    """Open connections one API process serves; past it, requests get a quick 503 and slow ones are cut
    off after a second. Never more than half the process's descriptor limit (``ulimit -n``)."""
    metrics: bool = True
    """Serve Prometheus metrics at ``/metrics`` (like the probes, without a key: keep the port internal)."""
    drain_s: float = 30.0
    """On SIGTERM, how long running requests may finish before they end with a retryable error."""
    processes: int = 0
    """API processes ``aiapi up`` starts, sharing the port (0: one per usable core)."""


class RedisConfig(_Section, frozen=True, kw_only=True):
    url: str | None = None
    """``None``: ``aiapi up`` starts an embedded Redis; the ``api`` and ``worker`` roles require a URL."""
    data_dir: str = ".aiapi"
    """Where the embedded Redis keeps its append-only file."""
    outage_grace_s: float = 5.0
    """How long a running generation, and the stream relaying it, wait out a lost Redis (a restart, a
    failover) before they fail. Its lease must outlive the outage too (``worker.lease_ttl_s``)."""
    max_connections: int = 100
    """Connections one process keeps at most; a command finding them all busy waits for a free one."""
    pool_timeout_s: float = 5.0
    """How long a command waits for a free connection before it fails as Redis being unreachable."""
    connect_timeout_s: float = 2.0
    username: str | None = None
    """ACL user; overrides the one in the URL."""
    password_env: str | None = None
    """Variable holding the password; overrides the one in the URL."""
    ca_file: str | None = None
    """CA bundle that verifies the server's certificate (``rediss://`` only)."""
    cert_file: str | None = None
    """Client certificate for servers that ask for one (``rediss://`` only, with ``key_file``)."""
    key_file: str | None = None
    sentinels: list[str] = msgspec.field(default_factory=list)
    """``["host:port", ...]``: ask these sentinels where the primary is, and follow its failovers. The
    URL, if any, then gives only the scheme, credentials and database."""
    sentinel_primary: str = "mymaster"
    """The name the sentinels monitor the primary under."""
    sentinel_password_env: str | None = None
    """Variable holding the sentinels' own password (``requirepass`` in sentinel.conf)."""


class WorkerConfig(_Section, frozen=True, kw_only=True):
    max_jobs: int = 200
    """Generations one worker process runs at once."""
    poll_delay_s: float = 0.25
    """Fallback polling interval; the wake-up pushed on enqueue normally starts jobs at once."""
    lease_ttl_s: float = 10.0
    """How long a generation's lease outlives a silent worker; it is renewed every third of it."""
    job_timeout_s: float = 900.0
    """Hard ceiling on one generation."""
    drain_s: int = 30
    """On SIGTERM, how long running generations may finish before they are stopped with a clean error."""
    metrics_port: int = 0
    """Serve this worker's Prometheus metrics on this port (0: off). ``aiapi up`` gives worker *i* port + i."""
    processes: int = 0
    """Worker processes ``aiapi up`` starts (0: one per usable core)."""


class TracingConfig(_Section, frozen=True, kw_only=True):
    otlp_endpoint: str | None = None
    """Export OpenTelemetry traces over OTLP/HTTP to this base URL (``/v1/traces`` is added). Unset:
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` if set, else tracing is off. Needs ``pip install aiapi[otel]``."""
    service_name: str | None = None
    """The ``service.name`` of the spans; default ``aiapi-api`` or ``aiapi-worker``."""


class RelayConfig(_Section, frozen=True, kw_only=True):
    event_ttl_s: int = 3600
    """How long a generation's event log is kept after its last event."""
    queue_timeout_s: float = 30.0
    """How long a request may wait for a worker before it fails with 503."""
    idle_check_s: float = 1.0
    """With no event for this long, the API checks the log for gaps and the worker for liveness."""
    keepalive_s: float = 15.0
    """Interval of SSE keep-alive comments while nothing else is sent."""
    max_buffered_events: int = 256
    """Events one stream holds in memory ahead of a slow client; the rest wait in Redis."""
    presence_ttl_s: float = 10.0
    """Each API instance keeps a presence key with this TTL, renewed every third of it. A worker stops a
    generation (not a background one) whose instance has been gone that long: nobody can receive it."""


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


class LimitsConfig(_Section, frozen=True, kw_only=True):
    """What one request may carry; larger ones get a 400 before anything is queued."""

    max_messages: int = 2048
    """Messages (Chat) or input items (Responses) in one request."""
    max_tools: int = 128
    max_tool_schema_bytes: int = 64 * 1024
    """Encoded size of one tool's parameter schema."""
    max_stop_sequences: int = 16


class RoutingConfig(_Section, frozen=True, kw_only=True):
    max_attempts: int = 3
    """Upstream calls one generation may make: the first plus retries on other accounts or channels."""
    backoff_s: float = 0.1
    """Wait before the first retry; it doubles with each further one (with jitter), up to 2 s."""
    cooldown_s: float = 30.0
    """How long an account that failed (429, 5xx, timeout, connection error) is skipped."""


class AdminConfig(_Section, frozen=True, kw_only=True):
    api_key_env: str | None = "AIAPI_ADMIN_KEY"
    """The admin API is served only when this variable holds a key; requests must bear it."""

    def resolved_key(self) -> str | None:
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None


def _default_channels() -> list[ChannelConfig]:
    return [MockChannel(name="mock", models=["mock-1"])]


class Settings(_Section, frozen=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    relay: RelayConfig = msgspec.field(default_factory=RelayConfig)
    responses: ResponsesConfig = msgspec.field(default_factory=ResponsesConfig)
    sessions: SessionsConfig = msgspec.field(default_factory=SessionsConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    access: AccessConfig = msgspec.field(default_factory=AccessConfig)
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    channels: list[ChannelConfig] = msgspec.field(default_factory=_default_channels)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    prices: dict[str, Price] = {}
    """USD per million tokens, by model name as clients ask for it; a model without a price costs 0."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    """``json``: one object per line with ``request_id`` and ``generation_id``, for log pipelines."""


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
    overrides = {
        ("redis", "url"): "REDIS_URL",
        ("server", "host"): "AIAPI_HOST",
        ("server", "port"): "AIAPI_PORT",
        ("database", "url"): "DATABASE_URL",
    }
    if env.get("AIAPI_WORKER_METRICS_PORT"):
        raw.setdefault("worker", {})["metrics_port"] = env["AIAPI_WORKER_METRICS_PORT"]
    if env.get("AIAPI_LOG_FORMAT"):
        raw["log_format"] = env["AIAPI_LOG_FORMAT"]
    for (section, key), variable in overrides.items():
        if env.get(variable):
            raw.setdefault(section, {})[key] = env[variable]


def _check(settings: Settings, source: str) -> None:
    names = [channel.name for channel in settings.channels]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate channel names: {', '.join(duplicates)}")
    for channel in settings.channels:
        problem = channel_problem(channel)
        if problem:
            raise ConfigError(f"{source}: channel '{channel.name}': {problem}")
    problem = server_problem(settings.server)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    if settings.routing.max_attempts < 1:
        raise ConfigError(f"{source}: routing.max_attempts must be at least 1")
    if settings.worker.processes < 0:
        raise ConfigError(f"{source}: worker.processes must be 0 (one per core) or more")
    if settings.worker.lease_ttl_s < 1:
        raise ConfigError(f"{source}: worker.lease_ttl_s must be at least 1 second")
    served = {model for channel in settings.channels for model in channel.model_map()}
    unknown = sorted(set(settings.prices) - served)
    if unknown:
        raise ConfigError(f"{source}: prices for models no channel serves: {', '.join(unknown)}")
    if settings.database.url is not None:
        # Imported here: a worker without a database URL never loads SQLAlchemy.
        from shared.ledger.database import database_url

        try:
            database_url(settings.database, settings.redis.data_dir)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    problem = redis_problem(settings.redis)
    if problem:
        raise ConfigError(f"{source}: {problem}")


def server_problem(server: ServerConfig) -> str | None:
    """What is wrong with the ``[server]`` section, if anything."""
    if not 0 < server.port < 65536:
        return "server.port must be between 1 and 65535"
    if min(server.header_timeout_s, server.body_timeout_s, server.keepalive_timeout_s) <= 0:
        return "server timeouts must be positive"
    if server.processes < 0:
        return "server.processes must be 0 (one per core) or more"
    if server.max_connections < 1:
        return "server.max_connections must be at least 1"
    if server.max_body_bytes_in_flight < server.max_body_bytes:
        return "server.max_body_bytes_in_flight must be at least server.max_body_bytes"
    return None


def redis_problem(redis: RedisConfig) -> str | None:
    """What is wrong with ``[redis]`` that its types cannot say, or ``None``."""
    if redis.max_connections < 2:
        return "redis.max_connections must be at least 2 (pub/sub holds one connection)"
    for address in redis.sentinels:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f"redis.sentinels: {address!r} is not host:port"
    tls_files = {"ca_file": redis.ca_file, "cert_file": redis.cert_file, "key_file": redis.key_file}
    if any(tls_files.values()) and not (redis.url or "").startswith("rediss://"):
        named = ", ".join(f"redis.{name}" for name, value in tls_files.items() if value)
        return f"{named}: only with a rediss:// redis.url"
    if bool(redis.cert_file) != bool(redis.key_file):
        return "redis.cert_file and redis.key_file go together"
    return None


def channel_problem(channel: ChannelConfig) -> str | None:
    """What is wrong with a channel that its types cannot say, or ``None``; shared with the admin API."""
    if not channel.name or "/" in channel.name:
        return "name must be non-empty and contain no '/'"
    if not channel.models:
        return "lists no models"
    if channel.weight < 1 or channel.max_concurrency < 0:
        return "weight must be at least 1 and max_concurrency at least 0"
    bridge_options = (channel.tool_client, channel.tool_validation, channel.tool_fallback)
    if channel.tool_mode != "bridge" and bridge_options != ("auto", "auto", "auto"):
        return 'tool_client, tool_validation and tool_fallback need tool_mode = "bridge"'
    if isinstance(channel, HttpChannel):
        if not channel.base_url.startswith(("http://", "https://")):
            return "base_url must start with http:// or https://"
        names = [account.name for account in channel.accounts]
        if len(set(names)) != len(names):
            return "account names must be unique"
    return None
