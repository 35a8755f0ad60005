"""Serving the API role with uvicorn (uvloop + httptools, with the JSON 400 of :mod:`api.http_protocol` and the
deadlines and connection cap of :mod:`api.connections`), and stopping it without failing requests.

On SIGTERM uvicorn stops listening, closes idle connections and waits for running requests. This
server also marks the app as draining at that moment (``/readyz`` turns 503; requests still running
after ``server.drain_s`` end with a retryable error in their protocol), and bounds uvicorn's own wait a
little beyond, for those errors to be written. A SIGTERM ends the process with status 0 once drained.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType

import uvicorn

from api.app import create_app
from api.connections import guarded_protocol
from api.draining import Drain
from shared.config import Settings
from shared.up import port_socket

__all__ = ("serve_api",)

_WRITE_ERRORS_S = 5.0
"""After the drain period: time for the streams it ended to write their error and close."""


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain, drain_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_s = drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._drain.begin(self._drain_s)
        super().handle_exit(sig, frame)


def serve_api(settings: Settings, *, sock: socket.socket | None = None, reuse_port: bool = False) -> None:
    """Serve until SIGTERM; on ``sock`` if given, else on the configured address (with SO_REUSEPORT if
    ``reuse_port``, so that several API processes share it and the kernel spreads connections over them)."""
    if sock is None and reuse_port:
        try:
            sock = port_socket(settings.server.host, settings.server.port)
        except OSError as exc:
            raise SystemExit(
                f"aiapi api: cannot listen on {settings.server.host}:{settings.server.port}: {exc}"
            ) from None
    drain = Drain()
    config = uvicorn.Config(
        create_app(settings, drain=drain),
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http=guarded_protocol(settings.server),
        # typed int by uvicorn, but only ever a call_later delay
        timeout_keep_alive=settings.server.keepalive_timeout_s,  # type: ignore[arg-type]
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.server.drain_s + settings.relay.idle_check_s + _WRITE_ERRORS_S),
    )
    server = _DrainingServer(config, drain, settings.server.drain_s)
    # uvicorn raises the signal it stopped on again once it is done, for the previous handler: with the
    # default one a drained API would die of SIGTERM instead of exiting 0.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _drained)
    server.run(sockets=[sock] if sock is not None else None)


def _drained(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
