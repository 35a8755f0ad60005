"""Hosts for real, on one machine: Linux network namespaces joined by veth links to a bridge.

Each host is a namespace with its own network stack and one address on 10.77.0.0/24; a switch namespace
holds the bridge, so cutting a host's link (``cut``) or dropping what one host sends another
(``silence``) is what a pulled cable or a broken route would do. Processes run in a host with
``ip netns exec``; the test's own client code runs in a host through :meth:`Hosts.run_in` (a thread
that has joined the namespace). Nothing leaves these namespaces; ``close`` deletes them all.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ("Hosts", "namespaces_unavailable")

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_SUBNET = "10.77.0"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, check=False)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.decode().strip()}")


def namespaces_unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no iproute2, no permission), or ``None``."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"aiapi-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"cannot make a network namespace: {exc}"
    _ip("netns", "del", probe)
    return None


class Hosts:
    """Namespaces named ``<prefix>-<host>``, each with ``eth0`` at ``address(host)``, on one bridge."""

    def __init__(self, names: list[str]) -> None:
        self.prefix = f"aiapi{os.getpid()}"
        self.names = names
        self._switch = f"{self.prefix}-switch"
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self._switch)
        self._made.append(self._switch)
        _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self._switch, "link", "set", "br0", "up")
        for number, name in enumerate(self.names):
            namespace = self.namespace(name)
            _ip("netns", "add", namespace)
            self._made.append(namespace)
            port = f"port{number}"
            _ip("-n", self._switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("-n", self._switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")

    def namespace(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def address(self, name: str) -> str:
        return f"{_SUBNET}.{10 + self.names.index(name)}"

    def command(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``name``."""
        return ["ip", "netns", "exec", self.namespace(name), *argv]

    def cut(self, name: str, *, up: bool = False) -> None:
        """Take host ``name``'s link down (``up``: bring it back)."""
        _ip("-n", self._switch, "link", "set", f"port{self.names.index(name)}", "up" if up else "down")

    def silence(self, listener: str, speaker: str, *, heal: bool = False) -> None:
        """Host ``listener`` hears nothing more from ``speaker``: ``speaker`` routes every packet for it
        to nowhere, as a link broken on the way back would. ``heal`` lets them through again."""
        change = "del" if heal else "add"
        _ip("-n", self.namespace(speaker), "route", change, "blackhole", f"{self.address(listener)}/32")

    def run_in(self, name: str, work: Callable[[], T]) -> T:
        """``work()`` on a thread that has joined host ``name``'s network: its sockets are that host's."""
        result: list[T] = []
        failure: list[BaseException] = []

        def body() -> None:
            try:
                with Path(f"/var/run/netns/{self.namespace(name)}").open("rb") as handle:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                result.append(work())
            except BaseException as exc:  # re-raised on the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=body, name=f"in-{name}")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return result[0]

    def close(self) -> None:
        for namespace in reversed(self._made):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        self._made.clear()
