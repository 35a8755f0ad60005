"""Serving the API role with uvicorn (uvloop + httptools, see :mod:`api.http_protocol`)."""

from __future__ import annotations

import socket

import uvicorn

from api.app import create_app
from api.http_protocol import GatewayHttpProtocol
from shared.config import Settings

__all__ = ("serve_api",)


def serve_api(settings: Settings, *, sock: socket.socket | None = None) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http=GatewayHttpProtocol,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=settings.worker.drain_s,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock] if sock is not None else None)
