"""Several hosts, really: Linux network namespaces on one bridge (tests/netns.py), one running Redis,
two gateway hosts each running ``aiapi api`` and ``aiapi worker``, and a client host driving both APIs.

- A response streamed through one API, whichever worker runs it, is replayed live and complete through
  the other (``GET /v1/responses/{id}?stream=true``).
- A gateway host lost mid-load (its processes killed, its link cut): the other keeps serving, the lost
  worker's generations end with a clean ``worker_lost`` error within the lease TTL, no gate stays held.
- One gateway host cut off from Redis (Redis's packets to it dropped, then let through again): its
  worker's conversations are released within the lease TTL and no generation runs twice.

Skipped, with the reason, where namespaces cannot be made (not root, no iproute2). The figures are
printed for docs/faults.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
import uvloop

from shared.keys import QUEUE
from shared.redis_server import find_redis_server
from tests.harness import REPO
from tests.netns import Hosts, namespaces_unavailable
from tests.streams import Outcome, StreamLoad, drill_channels, expected_deltas, prompt_of

pytestmark = pytest.mark.e2e

WORDS = 20
LEASE_TTL_S = 4.0
PRESENCE_TTL_S = 2.0
API_PORT = 8000
METRICS_PORT = 9100
CONFIG = f"""
[worker]
lease_ttl_s = {LEASE_TTL_S}
[relay]
idle_check_s = 0.5
presence_ttl_s = {PRESENCE_TTL_S}

{drill_channels(WORDS)}"""
GATEWAYS = ("gw1", "gw2")


class Site:
    """The hosts and the processes on them."""

    def __init__(self, hosts: Hosts, directory: Path) -> None:
        self.hosts = hosts
        self.dir = directory
        self.processes: dict[str, list[subprocess.Popen[bytes]]] = {}
        config = directory / "aiapi.toml"
        config.write_text(CONFIG, encoding="utf-8")
        self.redis_url = f"redis://{hosts.address('redis')}:6379/0"
        self._spawn(
            "redis",
            [find_redis_server(), "--bind", hosts.address("redis"), "--port", "6379", "--protected-mode", "no",
             "--save", "", "--appendonly", "no"],
            {},
        )  # fmt: skip
        for host in GATEWAYS:
            env = {
                "REDIS_URL": self.redis_url,
                "AIAPI_CONFIG": str(config),
                "AIAPI_HOST": hosts.address(host),
                "AIAPI_WORKER_METRICS_PORT": str(METRICS_PORT),
            }
            self._spawn(host, [sys.executable, "-m", "shared.cli", "worker"], env)
            self._spawn(host, [sys.executable, "-m", "shared.cli", "api", "--port", str(API_PORT)], env)
        hosts.run_in("client", self._wait_ready)

    def _spawn(self, host: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.dir / f"{host}-{len(self.processes.get(host, []))}.log").open("ab") as log:
            process = subprocess.Popen(
                self.hosts.command(host, argv), cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=log
            )
        self.processes.setdefault(host, []).append(process)

    def api(self, host: str) -> str:
        return f"http://{self.hosts.address(host)}:{API_PORT}/v1"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        for host in GATEWAYS:
            while True:
                try:
                    if httpx.get(f"{self.api(host).removesuffix('/v1')}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host} did not become ready:\n{self.logs()}")
                time.sleep(0.1)

    def generations(self, host: str) -> int:
        """Generations the worker on ``host`` has finished, however they ended (client host only)."""
        text = httpx.get(f"http://{self.hosts.address(host)}:{METRICS_PORT}/metrics", timeout=2).text
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("aiapi_worker_generations_total{")
            )
        )

    def kill(self, host: str) -> None:
        for process in self.processes.get(host, []):
            process.send_signal(signal.SIGKILL)
            process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.dir.glob("*.log"))

    def close(self) -> None:
        for processes in self.processes.values():
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        for processes in self.processes.values():
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def site() -> Iterator[Site]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"several-hosts drill needs Linux network namespaces: {reason}")
    hosts = Hosts(["redis", *GATEWAYS, "client"])
    with tempfile.TemporaryDirectory(prefix="aiapi-hosts-") as directory:
        running = None
        try:
            running = Site(hosts, Path(directory))
            yield running
        finally:
            if running is not None:
                running.close()
            hosts.close()


def _chat(index: int, model: str = "drill-mock") -> bytes:
    # An earlier turn makes the request continue a conversation, so it goes through the session gate.
    messages = [
        {"role": "user", "content": f"topic {index}"},
        {"role": "assistant", "content": f"earlier reply {index}"},
        {"role": "user", "content": prompt_of(index)},
    ]
    return msgspec.json.encode({"model": model, "stream": True, "messages": messages})


def _deltas(index: int) -> list[str]:
    return expected_deltas(index, WORDS)


def _held_locks(redis_url: str) -> list[str]:
    with redis.Redis.from_url(redis_url, socket_timeout=2) as client:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        held = [k.decode() for pattern in ("aiapi:{*}:lease", "aiapi:{*}:gate") for k in client.scan_iter(pattern)]
        for key in client.scan_iter("aiapi:{channel:*}:running"):
            held += [f"{key.decode()} {member.decode()}" for member in client.zrangebyscore(key, now_ms, "+inf")]
        return held + [f"{QUEUE} {job.decode()}" for job in client.zrange(QUEUE, 0, -1)]


def _locks_clear_within(redis_url: str, timeout_s: float) -> float:
    started = time.monotonic()
    while held := _held_locks(redis_url):
        assert time.monotonic() - started < timeout_s, f"{len(held)} locks still held, e.g. {held[:3]}"
        time.sleep(0.1)
    return time.monotonic() - started


def _admit_again(base_url: str, indices: list[int]) -> int:
    """New turns of the conversations ``indices`` through ``base_url``: how many completed."""
    load = StreamLoad(base_url, indices, body=lambda i: _chat(i, "fast-mock"), expected=_deltas, deadline_s=20)

    async def drive() -> None:
        await load.start()
        await load.finish()

    uvloop.run(drive())
    return load.summary()[Outcome.COMPLETE.value]


async def _replayed_deltas(client: httpx.AsyncClient, url: str) -> list[str]:
    """The text deltas of a stored response replayed as a stream, up to its ``response.completed``."""
    deltas: list[str] = []
    async with client.stream("GET", url, params={"stream": "true"}) as answer:
        assert answer.status_code == 200, await answer.aread()
        async for line in answer.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "response.output_text.delta":
                deltas.append(event["delta"])
            if event["type"] in ("response.completed", "response.failed"):
                assert event["type"] == "response.completed", event
                break
    return deltas


async def _stream_and_replay(site: Site, index: int, client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
    """Stream a stored response through gw1's API; a second in, replay it through gw2's: both texts."""
    ids: asyncio.Queue[str] = asyncio.Queue()
    original: list[str] = []

    async def first() -> None:
        body = {"model": "drill-mock", "input": prompt_of(index), "stream": True, "store": True}
        async with client.stream("POST", f"{site.api('gw1')}/responses", json=body) as answer:
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "response.created":
                        ids.put_nowait(event["response"]["id"])
                    elif event["type"] == "response.output_text.delta":
                        original.append(event["delta"])
                    elif event["type"] == "response.completed":
                        break

    running = asyncio.create_task(first())
    response_id = await ids.get()
    await asyncio.sleep(1.0)  # a few deltas in: the replay joins a generation still running
    replayed = await _replayed_deltas(client, f"{site.api('gw2')}/responses/{response_id}")
    await running
    return original, replayed


def test_a_stream_through_one_api_replays_through_the_other(site: Site) -> None:
    streams = 16

    async def drive() -> list[tuple[list[str], list[str]]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(_stream_and_replay(site, index, client) for index in range(streams)))

    def client_side() -> tuple[list[tuple[list[str], list[str]]], dict[str, int]]:
        before = {host: site.generations(host) for host in GATEWAYS}
        results = uvloop.run(drive())
        # A worker counts a generation just after its last event: wait for the counts to settle.
        deadline = time.monotonic() + 5
        while True:
            ran = {host: site.generations(host) - before[host] for host in GATEWAYS}
            if sum(ran.values()) >= streams or time.monotonic() > deadline:
                return results, ran
            time.sleep(0.05)

    results, ran = site.hosts.run_in("client", client_side)
    print(f"\nhosts replay: {streams} streams through gw1's API, run by the workers {ran}, all replayed via gw2")
    for index, (original, replayed) in enumerate(results):
        assert original == _deltas(index) and replayed == _deltas(index)
    assert sum(ran.values()) == streams and all(ran.values()), ran


def test_a_gateway_host_lost_under_load(site: Site) -> None:
    per_api = 40
    loads = {
        host: StreamLoad(site.api(host), range(n * 100, n * 100 + per_api), body=_chat, expected=_deltas, deadline_s=30)
        for n, host in enumerate(GATEWAYS)
    }
    lost_at = 0.0

    async def drive() -> None:
        nonlocal lost_at
        for load in loads.values():
            await load.start()
        for load in loads.values():
            await load.wait_for(lambda load: load.with_deltas(3) == per_api, timeout_s=20)
        await asyncio.to_thread(site.kill, "gw1")
        lost_at = time.perf_counter()
        await asyncio.sleep(0.2)  # the kernel's resets reach gw1's clients, then the cable goes
        site.hosts.cut("gw1")
        for load in loads.values():
            await load.finish()

    def client_side() -> tuple[float, int, int]:
        uvloop.run(drive())
        clear_s = _locks_clear_within(site.redis_url, LEASE_TTL_S + PRESENCE_TTL_S + 5)
        survivors = [record.index for load in loads.values() for record in load.records]
        return clear_s, _admit_again(site.api("gw2"), survivors), len(survivors)

    clear_s, admitted, sessions = site.hosts.run_in("client", client_side)
    kept, dropped = loads["gw2"].records, loads["gw1"].records
    errors = [record for record in kept if record.outcome is not Outcome.COMPLETE]
    last_error_s = max((record.ended_at - lost_at for record in errors), default=0.0)
    print(
        f"\nhosts: gw1 lost under load: through gw2 {loads['gw2'].summary()}, "
        f"errors {sorted({str(record.error.code) for record in errors if record.error})}, "
        f"last error after the loss {last_error_s:.2f} s; through gw1 {loads['gw1'].summary()}; "
        f"locks clear {clear_s:.2f} s after the load; {admitted}/{sessions} conversations admit again via gw2"
    )
    assert all(r.outcome in (Outcome.COMPLETE, Outcome.ERROR_CHUNK) for r in kept), loads["gw2"].summary()
    assert errors, "some of gw2's streams ran on gw1's worker"
    assert all(r.error is not None and r.error.code == "worker_lost" for r in errors)
    assert last_error_s < LEASE_TTL_S + 3
    assert all(r.outcome in (Outcome.COMPLETE, Outcome.BROKEN) and r.prefix_ok for r in dropped)
    assert admitted == sessions


def test_a_gateway_host_cut_off_from_redis(site: Site) -> None:
    streams = 60
    load = StreamLoad(site.api("gw1"), range(streams), body=_chat, expected=_deltas, deadline_s=40)
    cut_at = healed_at = 0.0
    hold_s = LEASE_TTL_S + 2

    async def drive() -> None:
        nonlocal cut_at, healed_at
        await load.start()
        await load.wait_for(lambda load: load.with_deltas(3) == streams, timeout_s=20)
        site.hosts.silence("gw2", "redis")
        cut_at = time.perf_counter()
        await asyncio.sleep(hold_s)
        site.hosts.silence("gw2", "redis", heal=True)
        healed_at = time.perf_counter()
        await load.finish()

    def client_side() -> tuple[int, int, float, float, int]:
        gw1_before, gw2_before = site.generations("gw1"), site.generations("gw2")
        uvloop.run(drive())
        clear_s = _locks_clear_within(site.redis_url, LEASE_TTL_S + 5)
        gw1_ran = site.generations("gw1") - gw1_before
        # gw2's worker notices its generations were taken from it once Redis answers again.
        deadline = time.monotonic() + 30
        while site.generations("gw2") - gw2_before < streams - gw1_ran:
            assert time.monotonic() < deadline, "gw2's worker did not end its stranded generations"
            time.sleep(0.1)
        ended_s = time.perf_counter() - healed_at
        return (
            gw1_ran,
            site.generations("gw2") - gw2_before,
            clear_s,
            ended_s,
            _admit_again(site.api("gw2"), list(range(streams))),
        )

    gw1_ran, gw2_ran, clear_s, ended_s, admitted = site.hosts.run_in("client", client_side)
    errors = [record for record in load.records if record.outcome is not Outcome.COMPLETE]
    last_error_s = max((record.ended_at - cut_at for record in errors), default=0.0)
    print(
        f"\nhosts: gw2 cut off from Redis for {hold_s:g} s under load: {load.summary()}, "
        f"errors {sorted({str(record.error.code) for record in errors if record.error})}, "
        f"last error after the cut {last_error_s:.2f} s; generations run by gw1 {gw1_ran}, by gw2 {gw2_ran} "
        f"(ended {ended_s:.2f} s after the heal); locks clear {clear_s:.2f} s after the load; "
        f"{admitted}/{streams} conversations admit again through gw2"
    )
    assert all(r.outcome in (Outcome.COMPLETE, Outcome.ERROR_CHUNK) for r in load.records), load.summary()
    assert errors and all(r.error is not None and r.error.code == "worker_lost" for r in errors)
    assert last_error_s < LEASE_TTL_S + 3
    # Each generation ran once: gw1 ran exactly the streams that completed, gw2 exactly the rest.
    assert gw1_ran == streams - len(errors) and gw2_ran == len(errors)
    assert admitted == streams
