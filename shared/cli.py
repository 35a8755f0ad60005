"""``aiapi``: run the gateway all-in-one, or one role of a scaled-out deployment.

aiapi up        API + worker(s) + the ledger's recorder, with an embedded Redis when no REDIS_URL is configured
aiapi api       the HTTP front end only
aiapi worker    one worker process only
aiapi recorder  the ledger's recorder only: drains the request log into the database
aiapi migrate   bring the ledger database's schema up to date
aiapi check     validate the configuration and say what would be served
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

import msgspec

from shared.catalog import Catalog
from shared.config import ConfigError, Settings, load_settings
from shared.logs import configure_logging
from shared.tracing import tracing

__all__ = ("main",)

log = logging.getLogger("aiapi")


def _parser() -> argparse.ArgumentParser:
    config_help = "TOML config file (default: $AIAPI_CONFIG, else built-in defaults)"
    parser = argparse.ArgumentParser(prog="aiapi", description="OpenAI-compatible AI API gateway")
    parser.add_argument("--config", help=config_help)
    # ``--config`` is accepted after the subcommand too (``aiapi up --config FILE``); SUPPRESS keeps a
    # subcommand that was not given one from resetting the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="run API and workers on this machine")
    up.add_argument("--workers", type=int, default=1, help="worker processes to start (default 1)")
    for command in (up, commands.add_parser("api", parents=[common], help="run the HTTP API role")):
        command.add_argument("--host")
        command.add_argument("--port", type=int)
    commands.add_parser("worker", parents=[common], help="run one worker process")
    commands.add_parser("recorder", parents=[common], help="run the ledger's recorder (request log into the database)")
    commands.add_parser("migrate", parents=[common], help="bring the ledger database's schema up to date")
    commands.add_parser("check", parents=[common], help="validate the configuration")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    environ = dict(os.environ)
    if getattr(args, "host", None):
        environ["AIAPI_HOST"] = args.host
    if getattr(args, "port", None):
        environ["AIAPI_PORT"] = str(args.port)
    return load_settings(args.config, environ)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"aiapi: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "check":
        return _check(settings)
    if args.command == "migrate":
        from shared.ledger.service import run_migrate

        run_migrate(settings)
        return 0
    configured = bool(settings.redis.url or settings.redis.sentinels)
    if args.command != "up" and not configured:
        print(f"aiapi {args.command}: set redis.url in the config or REDIS_URL, or redis.sentinels", file=sys.stderr)
        return 2
    if configured and not _redis_usable(args.command, settings):
        return 2
    tracing.configure(settings.tracing, os.environ, service=f"aiapi-{'api' if args.command == 'up' else args.command}")
    try:
        if args.command == "api":
            from api.server import serve_api

            serve_api(settings)
        elif args.command == "worker":
            from worker.main import run_worker

            run_worker(settings)
        elif args.command == "recorder":
            from shared.ledger.service import run_recorder

            run_recorder(settings)
        else:
            return _up(settings, args.config, args.workers)
    finally:
        tracing.shutdown()
    return 0


def _redis_usable(command: str, settings: Settings) -> bool:
    """Connect once before serving: a wrong password, CA or sentinel set stops the start here, with the
    setting named, instead of leaving a process up that can never serve. A Redis that is merely down is
    waited out by the roles, as before."""
    from shared.redis_client import RedisSetupError, check_redis

    try:
        outage = asyncio.run(check_redis(settings.redis))
    except RedisSetupError as exc:
        print(f"aiapi {command}: {exc}", file=sys.stderr)
        return False
    if outage:
        log.warning("%s; starting anyway and waiting for it", outage)
    return True


def _check(settings: Settings) -> int:
    catalog = Catalog(settings.channels)
    where = f"sentinels {', '.join(settings.redis.sentinels)}" if settings.redis.sentinels else settings.redis.url
    print(f"redis: {where or 'embedded (aiapi up only)'}")
    print(f"listen: http://{settings.server.host}:{settings.server.port}/v1")
    if settings.ledger.enabled:
        from shared.ledger.database import database_url

        url = database_url(settings.database, settings.redis.data_dir)
        print(f"request log: {url.render_as_string(hide_password=True)}, {len(settings.prices)} model price(s)")
    for channel in settings.channels:
        print(f"channel {channel.name} ({type(channel).__name__}): {', '.join(channel.model_map())}")
    models = catalog.models()
    print(f"models served: {', '.join(name for name, _ in models) or 'none'}")
    return 0 if models else 1


def _up(settings: Settings, config: str | None, workers: int) -> int:
    """Start Redis (embedded unless configured), the workers as child processes, and the API here."""
    from shared.redis_server import EmbeddedRedis

    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis.url
    if not redis_url and not settings.redis.sentinels:
        embedded = EmbeddedRedis(data_dir=Path(settings.redis.data_dir), persist=True)
        redis_url = embedded.start()
        log.info("embedded Redis at %s (data in %s)", redis_url, settings.redis.data_dir)
    if settings.ledger.enabled and not _migrate_ledger(settings, redis_url):
        if embedded is not None:
            embedded.stop()
        return 2
    from api.console.launch import console_banner

    console = console_banner(settings, redis_url)
    command = [sys.executable, "-m", "shared.cli", *(["--config", config] if config else [])]
    children = [
        subprocess.Popen([*command, "worker"], env=_worker_env(settings, redis_url, i)) for i in range(max(1, workers))
    ]
    if settings.ledger.enabled:
        recorder_env = {**os.environ, **({"REDIS_URL": redis_url} if redis_url else {})}
        children.append(subprocess.Popen([*command, "recorder"], env=recorder_env))
    models = ", ".join(name for name, _ in Catalog(settings.channels).models())
    print(
        f"aiapi: serving http://{settings.server.host}:{settings.server.port}/v1 "
        f"with {max(1, workers)} worker(s); models: {models}; "
        f"{'open mode (no API keys required)' if settings.access.mode == 'open' else 'keys mode (API keys required)'}",
        flush=True,
    )
    if console is not None:
        print(console, flush=True)
    # uvicorn stops gracefully on SIGTERM, then raises it again for the previous handler: without one of
    # ours that ends the process on the spot, and the workers and Redis started here would be left running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        from api.server import serve_api

        serve_api(msgspec.structs.replace(settings, redis=msgspec.structs.replace(settings.redis, url=redis_url)))
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=settings.worker.drain_s + 5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if embedded is not None:
            embedded.stop()
    return 0


def _migrate_ledger(settings: Settings, redis_url: str | None) -> bool:
    """Migrate before the API serves the request log (the recorder would too, but perhaps later);
    ``False``, with a message, when the database cannot be reached or migrated."""
    import asyncio

    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from shared.ledger.database import create_engine, database_url
    from shared.ledger.migrate import migrate_locked
    from shared.redis_client import redis_client

    async def migrate() -> None:
        redis = redis_client(msgspec.structs.replace(settings.redis, url=redis_url))
        engine = create_engine(database_url(settings.database, settings.redis.data_dir))
        try:
            await migrate_locked(engine, redis)
        finally:
            await redis.aclose()
            await engine.dispose()

    try:
        asyncio.run(migrate())
    except (RedisError, SQLAlchemyError, OSError) as exc:
        print(f"aiapi up: cannot migrate the ledger database: {exc}", file=sys.stderr)
        return False
    return True


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _worker_env(settings: Settings, redis_url: str | None, index: int) -> dict[str, str]:
    env = {**os.environ, **({"REDIS_URL": redis_url} if redis_url else {})}
    if settings.worker.metrics_port:
        env["AIAPI_WORKER_METRICS_PORT"] = str(settings.worker.metrics_port + index)
    return env


def run() -> None:
    """Console entry point: Ctrl-C after a graceful shutdown is a normal exit, not a traceback."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
