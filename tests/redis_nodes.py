"""Redis set-ups as operators run them, for the tests: a TLS server with an ACL user (and a throwaway CA
made with ``openssl``), a primary with a replica watched by three sentinels, and a server on a Unix socket.

Every server is a real ``redis-server`` child process on 127.0.0.1, stopped on exit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import redis

from shared.redis_server import find_redis_server
from tests.harness import free_port

__all__ = ("ACL_PASSWORD", "ACL_USER", "RedisNode", "SentinelSet", "TlsFiles", "TlsRedis", "unix_socket_redis")

ACL_USER = "gateway"
ACL_PASSWORD = "acl-secret"


@contextmanager
def unix_socket_redis(folder: Path) -> Iterator[Path]:
    """A redis-server listening on a Unix socket in ``folder`` only; the socket's path."""
    socket_path = folder / "redis.sock"
    server = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield socket_path
    finally:
        server.terminate()
        server.wait()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TlsFiles:
    """A throwaway CA, a server and a client certificate it signed, and a second CA that signed neither."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl is needed to make test certificates")
        self.dir = directory
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ("ca", "other-ca"):
            _openssl("req", "-x509", *key, "-keyout", self._path(f"{ca}.key"), "-out", self._path(f"{ca}.crt"),
                     "-days", "1", "-subj", f"/CN={ca}")  # fmt: skip
        extensions = self.dir / "san.cnf"
        extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n", encoding="utf-8")
        for name in ("server", "client"):
            _openssl("req", *key, "-keyout", self._path(f"{name}.key"), "-out", self._path(f"{name}.csr"),
                     "-subj", f"/CN={name}")  # fmt: skip
            _openssl("x509", "-req", "-in", self._path(f"{name}.csr"), "-CA", self._path("ca.crt"),
                     "-CAkey", self._path("ca.key"), "-CAcreateserial", "-out", self._path(f"{name}.crt"),
                     "-days", "1", "-extfile", str(extensions))  # fmt: skip

    def _path(self, name: str) -> str:
        return str(self.dir / name)

    @property
    def ca(self) -> str:
        return self._path("ca.crt")

    @property
    def other_ca(self) -> str:
        return self._path("other-ca.crt")

    def cert(self, name: str) -> str:
        return self._path(f"{name}.crt")

    def key(self, name: str) -> str:
        return self._path(f"{name}.key")


class RedisNode:
    """One ``redis-server`` (or sentinel) started with ``args``; ``port`` answers plain TCP."""

    def __init__(self, args: list[str], *, port: int, sentinel: bool = False, config: Path | None = None) -> None:
        self.port = port
        command = [find_redis_server(), *([str(config)] if config else []), *args]
        if sentinel:
            command.append("--sentinel")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.5) as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.kill()
                    raise RuntimeError(f"redis-server {' '.join(args)} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class TlsRedis:
    """A Redis answering TLS (client certificates required) on ``tls_port`` and plain TCP on ``port``,
    with the ACL user :data:`ACL_USER`; the default user stays open for the tests' own bookkeeping."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="aiapi-tls-")
        self.files = TlsFiles(Path(self._dir.name))
        self.port, self.tls_port = free_port(), free_port()
        files = self.files
        self.node = RedisNode(
            ["--bind", "127.0.0.1", "--port", str(self.port), "--tls-port", str(self.tls_port),
             "--tls-cert-file", files.cert("server"), "--tls-key-file", files.key("server"),
             "--tls-ca-cert-file", files.ca, "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name, "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"],
            port=self.port,
        )  # fmt: skip

    def url(self, database: int = 0) -> str:
        return f"rediss://{ACL_USER}@127.0.0.1:{self.tls_port}/{database}"

    def __enter__(self) -> TlsRedis:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.node.kill()
        self._dir.cleanup()


class SentinelSet:
    """A primary, one replica and three sentinels watching them as ``mymaster`` (quorum 2), quick to
    fail over: the primary is judged down after ``down_after_ms`` of silence."""

    PRIMARY = "mymaster"

    def __init__(self, *, down_after_ms: int = 1000) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="aiapi-sentinel-")
        root = Path(self._dir.name)
        storage = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        primary_port = free_port()
        self.primary = RedisNode([*storage, "--port", str(primary_port), "--dir", str(root)], port=primary_port)
        replica_port = free_port()
        self.replica = RedisNode(
            [*storage, "--port", str(replica_port), "--dir", str(root), "--replicaof", "127.0.0.1", str(primary_port)],
            port=replica_port,
        )
        self.sentinels: list[RedisNode] = []
        for number in range(3):
            port = free_port()
            config = root / f"sentinel-{number}.conf"
            config.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {root}\n"
                f"sentinel monitor {self.PRIMARY} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.PRIMARY} {down_after_ms}\n"
                f"sentinel failover-timeout {self.PRIMARY} 5000\n",
                encoding="utf-8",
            )
            self.sentinels.append(RedisNode([], port=port, sentinel=True, config=config))
        self._wait_watched()

    def _wait_watched(self) -> None:
        """Until the replica is in sync and every sentinel knows it and the others: before that, a
        failover would find no replica to promote."""
        deadline = time.monotonic() + 20
        while not self._watched():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not find the replica and each other")
            time.sleep(0.1)

    def _watched(self) -> bool:
        with redis.Redis(port=self.replica.port) as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port) as client:
                state = client.sentinel_master(self.PRIMARY)
                if state.get("num-slaves", 0) < 1 or state.get("num-other-sentinels", 0) < 2:
                    return False
        return True

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels]

    def primary_port(self) -> int:
        """Where the sentinels now say the primary is."""
        with redis.Redis(port=self.sentinels[0].port) as client:
            _, port = client.execute_command("SENTINEL", "get-master-addr-by-name", self.PRIMARY)
            return int(port)

    def __enter__(self) -> SentinelSet:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            node.kill()
        self._dir.cleanup()
