"""Starting the gateway's real processes for end-to-end tests and the benchmark.

``GatewayProcesses`` runs ``aiapi api`` and ``aiapi worker`` (and, when asked, more API processes and
``aiapi recorder``) as separate OS processes against a given Redis, with a config file written from the
channels given, and stops them afterwards. ``GatewayUp`` runs ``aiapi up`` instead, laid out as it lays
itself out. The ledger's database is a SQLite file of the run's own unless ``DATABASE_URL`` is passed in
``env``.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
import psutil
import redis

__all__ = ("GatewayProcesses", "GatewayUp", "free_port")

REPO = Path(__file__).resolve().parent.parent


_databases_in_use: set[int] = set()


def _claim_database(redis_url: str) -> tuple[str, int]:
    """A Redis database no live gateway uses, emptied: gateways sharing one would take each other's jobs."""
    number = min(set(range(1, 16)) - _databases_in_use)
    _databases_in_use.add(number)
    # A Unix socket's URL names its database in the query (unix:///path?db=N), a TCP one in the path.
    url = (
        f"{redis_url.split('?', 1)[0]}?db={number}"
        if redis_url.startswith("unix://")
        else (f"{redis_url.rsplit('/', 1)[0]}/{number}")
    )
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url, number


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(base_url: str, logs: Callable[[], str], within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url.removesuffix('/v1')}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the API did not come up:\n{logs()}")


class GatewayProcesses:
    """An API process and ``workers`` worker processes, configured by ``config_toml``.

    Each instance uses its own Redis database, so workers of one never take jobs queued by another.
    """

    def __init__(
        self,
        *,
        redis_url: str,
        config_toml: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        api_nofile: int | None = None,
    ) -> None:
        """``api_nofile``: the API process's descriptor limit (``ulimit -n``), for drills that use it up."""
        self.redis_url, self._database = _claim_database(redis_url)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._workers = workers
        self._api_nofile = api_nofile
        self._dir = tempfile.TemporaryDirectory(prefix="aiapi-e2e-")
        self.config_path = Path(self._dir.name) / "aiapi.toml"
        self.config_path.write_text(config_toml, encoding="utf-8")
        self._env = {**os.environ, "REDIS_URL": self.redis_url, "AIAPI_CONFIG": str(self.config_path), **(env or {})}
        # Only the API and the recorder use the database (a worker with no URL does not load SQLAlchemy).
        self._ledger_env = {"DATABASE_URL": f"sqlite:///{Path(self._dir.name) / 'ledger.db'}"}
        self.api: subprocess.Popen[bytes] | None = None
        self.apis: list[subprocess.Popen[bytes]] = []
        """Every API process started, the current ``api`` among them: all are stopped with the gateway."""
        self.workers: list[subprocess.Popen[bytes]] = []
        self.others: list[subprocess.Popen[bytes]] = []
        """Further API processes and recorders."""

    def _spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        nofile = self._api_nofile if args[0] == "api" else None

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        name = f"{args[0]}-{len(self.workers) + len(self.others)}.log"
        with (Path(self._dir.name) / name).open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "shared.cli", *args],
                cwd=REPO,
                env={**(self._ledger_env if args[0] != "worker" else {}), **self._env, **(env or {})},
                stdout=log,
                stderr=log,
                preexec_fn=limit if nofile is not None else None,
            )

    def start_recorder(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start an ``aiapi recorder`` (``env`` overrides, say another ``DATABASE_URL``)."""
        recorder = self._spawn("recorder", env=env)
        self.others.append(recorder)
        return recorder

    def add_api(self) -> str:
        """Start one more API process on the same Redis; its base URL once it answers."""
        port = free_port()
        self.spawn_api(port)
        return f"http://127.0.0.1:{port}/v1"

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn("worker")
        self.workers.append(worker)
        return worker

    def start(self) -> GatewayProcesses:
        for _ in range(self._workers):
            self.start_worker()
        return self.start_api()

    def kill_api(self) -> None:
        """SIGKILL the API process, as a crash would."""
        assert self.api is not None
        self.api.kill()
        self.api.wait()

    def start_api(self) -> GatewayProcesses:
        """Start the API process (again) on the same port and wait until it answers."""
        self.api = self.spawn_api(self.port)
        return self

    def spawn_api(self, port: int) -> subprocess.Popen[bytes]:
        """Start an API process on ``port`` (one more instance, or a restart) and wait until it answers."""
        api = self._spawn("api", "--port", str(port))
        self.apis.append(api)
        _wait_until_up(f"http://127.0.0.1:{port}/v1", self.logs)
        return api

    @property
    def pids(self) -> list[int]:
        """The running API's and workers' process ids."""
        return [process.pid for process in [*([self.api] if self.api else []), *self.workers]]

    def logs(self, tail: int = 4000) -> str:
        """The end of each process's log (``tail`` characters of each), under its file name."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in Path(self._dir.name).glob("*.log")
        )

    def stop(self) -> None:
        processes = [*self.workers, *self.others, *self.apis]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._dir.cleanup()
        _databases_in_use.discard(self._database)

    def __enter__(self) -> GatewayProcesses:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()


class GatewayUp:
    """``aiapi up`` against a given Redis (a database of its own, as above): ``api`` API processes and
    ``workers`` workers, by default one of each per core, plus the recorder when the config has the ledger on."""

    def __init__(
        self,
        *,
        redis_url: str,
        config_toml: str,
        api: int | None = None,
        workers: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.redis_url, self._database = _claim_database(redis_url)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._dir = tempfile.TemporaryDirectory(prefix="aiapi-up-")
        config = Path(self._dir.name) / "aiapi.toml"
        config.write_text(config_toml, encoding="utf-8")
        counts = [*(["--api-processes", str(api)] if api else []), *(["--workers", str(workers)] if workers else [])]
        self._argv = [sys.executable, "-m", "shared.cli", "--config", str(config), "up", "--port", str(self.port)]
        self._argv += counts
        database = {"DATABASE_URL": f"sqlite:///{Path(self._dir.name) / 'ledger.db'}"}
        self._env = {**os.environ, **database, "REDIS_URL": self.redis_url, **(env or {})}
        self._log = Path(self._dir.name) / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayUp:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(self._argv, cwd=REPO, env=self._env, stdout=log, stderr=log)
        try:
            # Several processes start at once: on a busy 2-core machine that can take a while.
            _wait_until_up(self.base_url, self.logs, within_s=90)
            deadline = time.monotonic() + 60
            while not all(self._listening(api) for api in self.apis()) and time.monotonic() < deadline:
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def apis(self) -> list[psutil.Process]:
        return self._children("api", "--reuse-port")

    def workers(self) -> list[psutil.Process]:
        return self._children("worker")

    def _children(self, *ending: str) -> list[psutil.Process]:
        assert self.process is not None
        children = psutil.Process(self.process.pid).children()
        return [child for child in children if child.cmdline()[-len(ending) :] == list(ending)]

    def _listening(self, api: psutil.Process) -> bool:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in api.net_connections("tcp"))

    @property
    def pids(self) -> list[int]:
        """The supervisor's and every process it started."""
        assert self.process is not None
        supervisor = psutil.Process(self.process.pid)
        return [supervisor.pid, *(child.pid for child in supervisor.children(recursive=True))]

    def logs(self, tail: int = 4000) -> str:
        return self._log.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()
        _databases_in_use.discard(self._database)

    def __enter__(self) -> GatewayUp:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()
