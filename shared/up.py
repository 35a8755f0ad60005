"""``aiapi up``: the whole gateway on one machine, as many API and worker processes as it has cores.

Starts Redis (embedded unless one is configured) and migrates the ledger, then hands the rest to
:class:`shared.supervisor.Supervisor`: the API processes, which share the port through SO_REUSEPORT
(each binds its own socket and the kernel spreads new connections over them), the workers and the
ledger's recorder. This process holds the port too, bound but not listening: it takes no connection,
but no other program can take the port while an API process restarts.

With several API processes, they write their Prometheus figures to a directory of this run
(prometheus-client's multiprocess mode) and ``/metrics`` on any of them reports the sum over all.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import msgspec

from shared.catalog import Catalog
from shared.config import Settings
from shared.supervisor import Role, Supervisor

__all__ = ("port_socket", "process_counts", "roles", "run_up", "usable_cores")

log = logging.getLogger("aiapi")

_STOP_MARGIN_S = 5.0
"""Beyond a child's own drain bound, before it is killed."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a container's cpuset narrows)."""
    return len(os.sched_getaffinity(0))


def process_counts(settings: Settings, *, api: int | None, workers: int | None, cores: int) -> tuple[int, int]:
    """API and worker processes to start: the flag if given, else the config if not 0, else ``cores``."""
    return (api or settings.server.processes or cores, workers or settings.worker.processes or cores)


def port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT, not yet listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run_up(settings: Settings, config: str | None, *, api: int | None, workers: int | None) -> int:
    from shared.redis_server import EmbeddedRedis

    api_count, worker_count = process_counts(settings, api=api, workers=workers, cores=usable_cores())
    try:
        reserved = port_socket(settings.server.host, settings.server.port)
    except OSError as exc:
        print(f"aiapi up: cannot listen on {settings.server.host}:{settings.server.port}: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis.url
    metrics_dir = tempfile.mkdtemp(prefix="aiapi-metrics-") if api_count > 1 else None
    try:
        if not redis_url and not settings.redis.sentinels:
            embedded = EmbeddedRedis(data_dir=Path(settings.redis.data_dir), persist=True, own_process_group=True)
            redis_url = embedded.start()
            log.info("embedded Redis at %s (data in %s)", redis_url, settings.redis.data_dir)
        if settings.ledger.enabled and not _migrate_ledger(settings, redis_url):
            return 2
        from api.console.launch import console_banner

        # Before the children's environment is copied: it may set the admin key they are to use.
        console = console_banner(settings, redis_url)
        children = roles(settings, config, redis_url, metrics_dir, api_count, worker_count)

        def started() -> None:
            models = ", ".join(name for name, _ in Catalog(settings.channels).models())
            mode = (
                "open mode (no API keys required)"
                if settings.access.mode == "open"
                else "keys mode (API keys required)"
            )
            print(
                f"aiapi: serving http://{settings.server.host}:{settings.server.port}/v1 with {api_count} API "
                f"process(es) and {worker_count} worker(s); models: {models}; {mode}",
                flush=True,
            )
            if console is not None:
                print(console, flush=True)

        return Supervisor(children).run(started)
    finally:
        reserved.close()
        if embedded is not None:
            embedded.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def roles(
    settings: Settings, config: str | None, redis_url: str | None, metrics_dir: str | None, apis: int, workers: int
) -> list[Role]:
    """The children of ``aiapi up``: ``apis`` API processes, ``workers`` workers and the recorder (with the
    ledger on), each with its environment and its place in the stop order."""
    command = [sys.executable, "-m", "shared.cli", *(["--config", config] if config else [])]
    base = {**os.environ, **({"REDIS_URL": redis_url} if redis_url else {})}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)  # only this run's API processes share one, set below
    api_env = {**base, "AIAPI_HOST": settings.server.host, "AIAPI_PORT": str(settings.server.port)}
    on_exit = None
    if metrics_dir is not None:
        from prometheus_client.multiprocess import mark_process_dead

        api_env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        on_exit = functools.partial(mark_process_dead, path=metrics_dir)
    api_stop_s = settings.server.drain_s + settings.relay.idle_check_s + 2 * _STOP_MARGIN_S
    layout = [
        Role(f"api {i + 1}", [*command, "api", "--reuse-port"], api_env, 0, api_stop_s, on_exit) for i in range(apis)
    ]
    worker_stop_s = settings.worker.drain_s + _STOP_MARGIN_S
    for i in range(workers):
        env = {
            **base,
            **(
                {"AIAPI_WORKER_METRICS_PORT": str(settings.worker.metrics_port + i)}
                if settings.worker.metrics_port
                else {}
            ),
        }
        layout.append(Role(f"worker {i + 1}", [*command, "worker"], env, 1, worker_stop_s))
    if settings.ledger.enabled:
        # After the workers: it writes down what they recorded last.
        layout.append(Role("recorder", [*command, "recorder"], base, 2, worker_stop_s))
    return layout


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
