"""Redis as operators run it, with the real processes: TLS with an ACL user, a Sentinel failover under
streaming load, connections bounded over load waves, and wrong Redis settings that stop the start.

The failover drill kills the primary (SIGKILL) while ~60 streams run and stored responses are being
written. Streams ride the failover out within ``redis.outage_grace_s`` or end with a clean error past it;
every response stored before the kill must be found on the promoted replica, and those acknowledged in
the last moment before it that replication had not carried yet are counted. The figures are printed for
docs/faults.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import openai
import pytest
import redis
import uvloop

from shared.keys import QUEUE
from tests.harness import REPO, GatewayProcesses, free_port
from tests.redis_nodes import ACL_PASSWORD, ACL_USER, SentinelSet, TlsRedis, unix_socket_redis
from tests.streams import Outcome, StreamLoad, drill_channels, expected_deltas, prompt_of

pytestmark = pytest.mark.e2e

STREAMS = 60
WORDS = 24
LEASE_TTL_S = 12.0
"""Longer than a failover takes, so no lease expires while no primary answers."""
MOCKS = f"""
[worker]
lease_ttl_s = {LEASE_TTL_S}
[relay]
idle_check_s = 0.5

{drill_channels(WORDS)}"""
_NO_ENV_URL = {"REDIS_URL": ""}
"""The harness sets ``REDIS_URL`` to a plain URL; these tests configure Redis in the file instead."""


def _chat(index: int) -> bytes:
    # An earlier turn makes the request continue a conversation, so it goes through the session gate.
    messages = [
        {"role": "user", "content": f"topic {index}"},
        {"role": "assistant", "content": f"earlier reply {index}"},
        {"role": "user", "content": prompt_of(index)},
    ]
    return msgspec.json.encode({"model": "drill-mock", "stream": True, "messages": messages})


def _deltas(index: int) -> list[str]:
    return expected_deltas(index, WORDS)


def _held_locks(client: redis.Redis) -> list[str]:
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    held = [key.decode() for pattern in ("aiapi:{*}:lease", "aiapi:{*}:gate") for key in client.scan_iter(pattern)]
    for key in client.scan_iter("aiapi:{channel:*}:running"):
        held += [f"{key.decode()} {member.decode()}" for member in client.zrangebyscore(key, now_ms, "+inf")]
    return held + [f"{QUEUE} {job.decode()}" for job in client.zrange(QUEUE, 0, -1)]


# --- TLS and ACL -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedis]:
    with TlsRedis() as server:
        yield server


def _tls_section(server: TlsRedis, *, ca: str | None = None) -> str:
    files = server.files
    return f"""
[redis]
url = "{server.url()}"
password_env = "TEST_REDIS_PASSWORD"
ca_file = "{ca or files.ca}"
cert_file = "{files.cert("client")}"
key_file = "{files.key("client")}"
"""


def test_gateway_over_tls_as_an_acl_user(tls_redis: TlsRedis) -> None:
    env = {**_NO_ENV_URL, "TEST_REDIS_PASSWORD": ACL_PASSWORD}
    plain = f"redis://127.0.0.1:{tls_redis.port}/0"
    with GatewayProcesses(redis_url=plain, config_toml=_tls_section(tls_redis) + MOCKS, env=env) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="fast-mock", stream=True, messages=[{"role": "user", "content": prompt_of(1)}]
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "".join(_deltas(1))
        stored = client.responses.create(model="fast-mock", input="kept", store=True)
        assert client.responses.retrieve(stored.id).output_text == stored.output_text
        with redis.Redis(port=tls_redis.port) as admin:
            users = {entry["user"] for entry in admin.client_list() if entry["db"] == "0"}
        assert ACL_USER in users, users


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[str]:
    with unix_socket_redis(tmp_path) as socket_path:
        yield f"unix://{socket_path}?db=0"


def test_gateway_over_a_unix_socket(unix_redis: str) -> None:
    with GatewayProcesses(redis_url=unix_redis, config_toml=MOCKS) as gateway:
        assert gateway.redis_url.startswith("unix://")
        client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="fast-mock", stream=True, messages=[{"role": "user", "content": prompt_of(2)}]
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "".join(_deltas(2))


# --- wrong settings stop the start -------------------------------------------------------------------


def _start_fails(role: str, config: str, env: dict[str, str], tmp_path: Path) -> tuple[float, str]:
    path = tmp_path / f"{role}.toml"
    path.write_text(config, encoding="utf-8")
    started = time.monotonic()
    ended = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "--config",
            str(path),
            role,
            *(["--port", str(free_port())] if role != "worker" else []),
        ],
        cwd=REPO,
        env={**os.environ, **_NO_ENV_URL, **env},
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert ended.returncode == 2, ended.stderr.decode()[-2000:]
    return time.monotonic() - started, ended.stderr.decode()


@pytest.mark.parametrize("role", ["api", "worker", "up"])
@pytest.mark.parametrize("case", ["wrong CA", "wrong password", "unreachable sentinels"])
def test_wrong_redis_settings_stop_the_start(tls_redis: TlsRedis, tmp_path: Path, role: str, case: str) -> None:
    env = {"TEST_REDIS_PASSWORD": ACL_PASSWORD}
    if case == "wrong CA":
        config, named = _tls_section(tls_redis, ca=tls_redis.files.other_ca), "redis.ca_file"
    elif case == "wrong password":
        config, named, env = _tls_section(tls_redis), "redis.password_env", {"TEST_REDIS_PASSWORD": "wrong"}
    else:
        sentinels = ", ".join(f'"127.0.0.1:{free_port()}"' for _ in range(3))
        config, named = f"[redis]\nsentinels = [{sentinels}]\n", "redis.sentinels"
    took_s, message = _start_fails(role, config + MOCKS, env, tmp_path)
    print(f"\n{role} with {case}: exit 2 after {took_s:.2f} s: {message.strip().splitlines()[-1][:160]}")
    assert named in message
    assert took_s < 8


# --- connections stay bounded over load waves --------------------------------------------------------


def test_connections_stay_bounded_over_load_waves(redis_url: str) -> None:
    bound = 12
    config = f"[redis]\nmax_connections = {bound}\n" + MOCKS
    with GatewayProcesses(redis_url=redis_url, config_toml=config, workers=1) as gateway:
        database = gateway.redis_url.rsplit("/", 1)[1]
        counts: list[int] = []
        for wave in range(4):
            load = StreamLoad(
                gateway.base_url,
                range(wave * 1000, wave * 1000 + 100),
                body=lambda index: _chat(index).replace(b"drill-mock", b"fast-mock"),
                expected=_deltas,
                deadline_s=30,
            )

            async def drive(load: StreamLoad = load) -> None:
                await load.start()
                await load.finish()

            uvloop.run(drive())
            assert load.summary()[Outcome.COMPLETE.value] == 100, load.summary()
            with redis.Redis.from_url(redis_url) as admin:
                counts.append(sum(1 for entry in admin.client_list() if entry["db"] == database))
    print(f"\nconnections of API + worker (bound {bound} each) after waves of 100 streams: {counts}")
    assert max(counts) <= 2 * bound


# --- Sentinel failover under load --------------------------------------------------------------------


@pytest.mark.parametrize("grace_s", [10.0, 0.3])
def test_drill_sentinel_failover_under_load(grace_s: float) -> None:
    with SentinelSet() as nodes:
        addresses = ", ".join(f'"{address}"' for address in nodes.addresses)
        config = f'[redis]\nurl = "redis://primary/0"\nsentinels = [{addresses}]\noutage_grace_s = {grace_s}\n' + MOCKS
        plain = f"redis://127.0.0.1:{nodes.primary.port}/0"
        with GatewayProcesses(redis_url=plain, config_toml=config, workers=2, env=_NO_ENV_URL) as gateway:
            _failover_drill(nodes, gateway, grace_s)


class _Writer:
    """Stores a response every 20 ms through the API, noting when each was acknowledged."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.acknowledged: list[tuple[float, str]] = []
        self.statuses: dict[int, int] = {}
        self.slowest_s = 0.0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=15) as client:
            number = 0
            while not self.stop.is_set():
                number += 1
                sent = time.perf_counter()
                answer = await client.post(
                    "/responses", json={"model": "fast-mock", "input": f"w{number}", "store": True}
                )
                self.slowest_s = max(self.slowest_s, time.perf_counter() - sent)
                self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200:
                    self.acknowledged.append((time.perf_counter(), answer.json()["id"]))
                await asyncio.sleep(0.02)


def _failover_drill(nodes: SentinelSet, gateway: GatewayProcesses, grace_s: float) -> None:
    old_port = nodes.primary.port
    load = StreamLoad(gateway.base_url, range(STREAMS), body=_chat, expected=_deltas, deadline_s=LEASE_TTL_S + 20)
    writer = _Writer(gateway.base_url)
    killed_at = promoted_at = 0.0

    async def drive() -> None:
        nonlocal killed_at, promoted_at
        writing = asyncio.create_task(writer.run())
        await load.start()
        await load.wait_for(lambda load: load.with_deltas(3) == STREAMS, timeout_s=20)
        nodes.primary.process.send_signal(signal.SIGKILL)
        killed_at = time.perf_counter()
        while await asyncio.to_thread(nodes.primary_port) == old_port:
            assert time.perf_counter() - killed_at < 15, "the sentinels did not fail over"
            await asyncio.sleep(0.05)
        promoted_at = time.perf_counter()
        await load.finish()
        await asyncio.sleep(1.0)
        writer.stop.set()
        await writing

    uvloop.run(drive())
    nodes.primary.process.wait()
    back = next((at for at, _ in writer.acknowledged if at > killed_at), None)
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        lost = [(at, rid) for at, rid in writer.acknowledged if client.get(f"/responses/{rid}").status_code != 200]
    stored_before = sum(1 for at, _ in writer.acknowledged if at < killed_at)
    with redis.Redis(port=nodes.replica.port) as promoted:
        started = time.monotonic()
        while held := _held_locks(promoted):
            assert time.monotonic() - started < LEASE_TTL_S + 3, f"{len(held)} locks still held, e.g. {held[:3]}"
            time.sleep(0.1)
        clear_s = time.monotonic() - started
    counts = load.summary()
    codes: dict[str, int] = {}
    for record in load.records:
        if record.error is not None:
            codes[f"{record.status} {record.error.code}"] = codes.get(f"{record.status} {record.error.code}", 0) + 1
    print(
        f"\ndrill sentinel failover (grace {grace_s:g} s): {counts}, errors {codes}, "
        f"promoted_after_kill_s {promoted_at - killed_at:.2f}, "
        f"last_stream_end_after_kill_s {max(r.ended_at for r in load.records) - killed_at:.2f}, "
        f"stores {writer.statuses}, slowest_store_s {writer.slowest_s:.2f}, "
        f"first_store_after_kill_s {None if back is None else round(back - killed_at, 2)}, "
        f"stored_before_kill {stored_before}, lost {len(lost)}"
        f"{f' (acknowledged {killed_at - lost[-1][0]:.3f} s before the kill at most)' if lost else ''}, "
        f"locks_clear_after_s {clear_s:.2f}"
    )
    acceptable = {Outcome.COMPLETE, Outcome.HTTP_ERROR, Outcome.ERROR_CHUNK}
    assert all(record.outcome in acceptable for record in load.records), counts
    rode_it_out = grace_s > promoted_at - killed_at + 2
    if rode_it_out:
        assert counts[Outcome.COMPLETE.value] == STREAMS, counts
    else:
        assert all(record.error and record.error.code == "redis_unavailable" for record in load.records), codes
    assert max(record.ended_at for record in load.records) - killed_at < LEASE_TTL_S + 3
    assert set(writer.statuses) <= {200, 503}, writer.statuses
    assert back is not None and back - promoted_at < 5, "stores did not resume on the new primary"
    # Replication is asynchronous: only what the primary acknowledged just before dying may be missing.
    assert all(killed_at - at < 0.5 for at, _ in lost), lost
