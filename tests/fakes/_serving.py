"""Running a fake upstream: serving its ASGI app on a free port, and starting it as a subprocess.

A fake prints ``LISTENING <port>`` once its socket listens; :class:`FakeProcess` waits for that line,
so a test never races the server's start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ("FakeProcess", "argument_parser", "serve")


def argument_parser() -> argparse.ArgumentParser:
    """A parser with the ``--host`` and ``--port`` every fake takes (port 0: any free one)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    return parser


def serve(app: Any, *, host: str, port: int) -> None:
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening before the line is printed: a client may connect at once, and waits in the backlog until
    # uvicorn accepts (a socket only bound refuses it).
    sock.listen(2048)
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


class FakeProcess:
    """``python -m <module> --port 0 <args>`` as a context manager; ``root_url`` is set once it listens."""

    def __init__(self, module: str, args: list[str]) -> None:
        self._command = [sys.executable, "-m", module, "--port", "0", *args]
        self._process: subprocess.Popen[str] | None = None
        self.root_url = ""

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            self._command,
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("LISTENING"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"{self._command[2]} did not start: {line!r}")
        self.root_url = f"http://127.0.0.1:{line.split()[1]}"
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            with contextlib.suppress(OSError):
                process.stdout.close()
