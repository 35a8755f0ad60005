"""Child processes kept running: started together, restarted with backoff when one dies unexpectedly,
and stopped in stages on SIGTERM, SIGINT or SIGHUP (``aiapi up``'s parent is this and little else).

Children run in their own process group, so a Ctrl-C in the terminal reaches only the supervisor, which
then stops them in order: the API processes first (their running requests need the workers to finish),
then the workers and the recorder. A second signal while stopping kills what is left at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

__all__ = ("Role", "Supervisor", "backoff_s")

log = logging.getLogger("aiapi.supervisor")

_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
_STEADY_S = 30.0
"""A child that ran this long before it died is restarted after the shortest delay again."""
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def backoff_s(failures: int) -> float:
    """The delay before the restart that follows ``failures`` quick deaths in a row (1 or more)."""
    return _BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1]


@dataclass(frozen=True)
class Role:
    """One child process to keep running."""

    name: str
    """For the logs: ``api 1``, ``worker 2``, ``recorder``."""
    argv: Sequence[str]
    env: dict[str, str]
    stage: int
    """Stop order: every child of a lower stage has ended before the next stage is told to stop."""
    stop_timeout_s: float
    """How long a child may take to drain after SIGTERM before it is killed."""
    on_exit: Callable[[int], None] | None = None
    """Called with the pid of each of this role's processes that ended (say, to drop its metrics files)."""


@dataclass
class _Child:
    role: Role
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        # process_group=0: terminal signals reach the supervisor only (see the module's docstring)
        self.process = subprocess.Popen(list(self.role.argv), env=self.role.env, process_group=0)
        self.started = time.monotonic()
        self.restart_at = None

    def reap(self) -> int | None:
        """The exit status if the process has ended (once), else ``None``."""
        if self.process is None:
            return None
        status = self.process.poll()
        if status is not None:
            if self.role.on_exit is not None:
                self.role.on_exit(self.process.pid)
            self.process = None
        return status


class Supervisor:
    """Runs ``roles`` until a stop signal, then stops them stage by stage; :meth:`run` returns 0."""

    def __init__(self, roles: Sequence[Role]) -> None:
        self._children = [_Child(role) for role in roles]
        self._signals: list[int] = []

    def run(self, started: Callable[[], None] | None = None) -> int:
        """Start every child, call ``started``, keep them running until a stop signal, then stop them."""
        reader, writer = os.pipe()
        os.set_blocking(reader, False)
        os.set_blocking(writer, False)
        # A byte on the pipe for each signal wakes the loop's select: no work happens in signal handlers.
        previous_fd = signal.set_wakeup_fd(writer)
        handlers = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore)
        try:
            for child in self._children:
                child.start()
            if started is not None:
                started()
            while not self._signals:
                self._pause(reader, self._next_due())
                self._tend()
            log.info("stopping on %s", signal.Signals(self._signals[0]).name)
            self._stop_all(reader)
        finally:
            for child in self._children:  # only after an error in the loop: the stop leaves none running
                if child.process is not None:
                    child.process.kill()
                    child.process.wait()
                    child.reap()
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            os.close(reader)
            os.close(writer)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    @staticmethod
    def _pause(reader: int, timeout: float) -> None:
        select.select([reader], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(reader, 512):
                pass

    def _next_due(self) -> float:
        due = [child.restart_at for child in self._children if child.restart_at is not None]
        return min(due) - time.monotonic() if due else 5.0

    def _tend(self) -> None:
        now = time.monotonic()
        for child in self._children:
            status = child.reap()
            if status is not None:
                child.failures = 1 if now - child.started >= _STEADY_S else child.failures + 1
                delay = backoff_s(child.failures)
                child.restart_at = now + delay
                log.warning(
                    "%s ended unexpectedly (status %s); restarting it in %.1f s", child.role.name, status, delay
                )
            elif child.restart_at is not None and child.restart_at <= now:
                child.start()
                assert child.process is not None
                log.info("%s restarted (pid %d)", child.role.name, child.process.pid)

    def _stop_all(self, reader: int) -> None:
        for stage in sorted({child.role.stage for child in self._children}):
            group = [child for child in self._children if child.role.stage == stage]
            for child in group:
                child.restart_at = None
                if child.process is not None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + max(child.role.stop_timeout_s for child in group)
            while any(child.process is not None for child in group):
                forced = len(self._signals) > 1 or time.monotonic() >= deadline
                for child in group:
                    if forced and child.process is not None:
                        log.warning("%s did not stop in time; killing it", child.role.name)
                        child.process.kill()
                        child.process.wait()
                    child.reap()
                self._pause(reader, min(0.5, deadline - time.monotonic()))


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD's handler: its only use is the wake-up byte Python writes for it."""
