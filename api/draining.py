"""The API's shutdown state: set by SIGTERM, read by ``/readyz`` and by every relayed generation.

On SIGTERM the server stops accepting connections and lets running requests finish; ``/readyz`` answers
503 at once so a load balancer stops sending more. Requests still running ``server.drain_s`` later end
with an error in their client's protocol (an SSE error frame, ``response.failed``, a 503 body), so
clients see a clean, retryable failure instead of a cut connection.
"""

from __future__ import annotations

import math
import time

from shared.errors import ServiceUnavailable

__all__ = ("Drain", "ShuttingDown")


class ShuttingDown(ServiceUnavailable):
    """The API instance is restarting and the request outlasted its drain period; retrying is safe."""

    default_code = "server_shutting_down"

    def __init__(self) -> None:
        super().__init__("The server is restarting and ended this request; please retry it.")


class Drain:
    """Whether this process is shutting down, and until when running requests may go on."""

    __slots__ = ("deadline", "draining")

    def __init__(self) -> None:
        self.draining = False
        """The one attribute the hot path reads: false for the whole life of a process not stopping."""
        self.deadline = math.inf

    def begin(self, drain_s: float) -> None:
        """Start draining (safe in a signal handler: it only sets attributes)."""
        if not self.draining:
            self.deadline = time.monotonic() + drain_s
            self.draining = True

    def check(self) -> None:
        """Raise :class:`ShuttingDown` once the drain period is over."""
        if time.monotonic() >= self.deadline:
            raise ShuttingDown()
