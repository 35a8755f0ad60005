"""``aiapi``: run the gateway all-in-one, or one role of a scaled-out deployment.

aiapi up        API and worker processes (one each per core) + the ledger's recorder, with an embedded Redis
                when no REDIS_URL is configured
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
import sys

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
    per_core = "(default: [%s] processes in the config, else one per usable core)"
    up.add_argument("--api-processes", type=_positive, help=f"API processes to start {per_core % 'server'}")
    up.add_argument("--workers", type=_positive, help=f"worker processes to start {per_core % 'worker'}")
    api = commands.add_parser("api", parents=[common], help="run the HTTP API role")
    api.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the port with other API processes (SO_REUSEPORT), as aiapi up does",
    )
    for command in (up, api):
        command.add_argument("--host")
        command.add_argument("--port", type=int)
    commands.add_parser("worker", parents=[common], help="run one worker process")
    commands.add_parser("recorder", parents=[common], help="run the ledger's recorder (request log into the database)")
    commands.add_parser("migrate", parents=[common], help="bring the ledger database's schema up to date")
    commands.add_parser("check", parents=[common], help="validate the configuration")
    return parser


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


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

            serve_api(settings, reuse_port=args.reuse_port)
        elif args.command == "worker":
            from worker.main import run_worker

            run_worker(settings)
        elif args.command == "recorder":
            from shared.ledger.service import run_recorder

            run_recorder(settings)
        else:
            from shared.up import run_up

            return run_up(settings, args.config, api=args.api_processes, workers=args.workers)
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


def run() -> None:
    """Console entry point: Ctrl-C after a graceful shutdown is a normal exit, not a traceback."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
