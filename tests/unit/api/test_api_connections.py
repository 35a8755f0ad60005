"""The connection cap: never more than half the process's descriptor limit."""

from __future__ import annotations

import resource

import pytest

from api.connections import connection_cap, guarded_protocol
from shared.config import ServerConfig


@pytest.mark.parametrize(
    ("configured", "nofile", "cap"),
    [(1024, 4096, 1024), (1024, 1024, 512), (1024, resource.RLIM_INFINITY, 1024), (10, 1, 1)],
)
def test_the_cap_leaves_half_the_descriptors_free(
    monkeypatch: pytest.MonkeyPatch, configured: int, nofile: int, cap: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (nofile, resource.RLIM_INFINITY))
    assert connection_cap(configured) == cap


def test_the_protocol_carries_the_configured_deadlines() -> None:
    protocol = guarded_protocol(ServerConfig(header_timeout_s=3, body_timeout_s=7, max_connections=5))
    assert (protocol.header_timeout_s, protocol.body_timeout_s, protocol.max_connections) == (3, 7, 5)
