"""Fault drills under load: a worker killed, Redis restarted, and clients leaving, each with ~150 streams
in flight through the real API and two workers.

Every stream must end complete and correct, or with a clean OpenAI-shaped error (an HTTP status before
any output, an error chunk after correct output); none may hang. Each stream continues a conversation
and its channel has a concurrency limit, so each run holds a session gate, a lease and a channel slot.
After each drill no such lock may remain once its TTL has passed, and the sessions of the drill admit
new requests. The figures are printed for docs/faults.md.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
import uvloop

from shared.keys import QUEUE
from shared.redis_server import EmbeddedRedis
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses
from tests.streams import Outcome, StreamLoad, StreamRecord, drill_channels, expected_deltas, prompt_of

pytestmark = pytest.mark.e2e

STREAMS = 150
WORDS = 20
LEASE_TTL_S = 3.0
# A worker runs at most 100 generations, so each of the two runs some of the 150 streams.
SETTINGS = f"""
[worker]
lease_ttl_s = {LEASE_TTL_S}
max_jobs = 100
[relay]
idle_check_s = 0.5
"""
MOCKS = f"""
{drill_channels(WORDS)}"""
ACCEPTABLE = {Outcome.COMPLETE, Outcome.HTTP_ERROR, Outcome.ERROR_CHUNK}


def _messages(index: int, last: str) -> list[dict[str, str]]:
    # An earlier turn makes the request continue a conversation, so it goes through the session gate.
    return [
        {"role": "user", "content": f"topic {index}"},
        {"role": "assistant", "content": f"earlier reply {index}"},
        {"role": "user", "content": last},
    ]


def _chat(model: str) -> Callable[[int], bytes]:
    return lambda index: msgspec.json.encode(
        {"model": model, "stream": True, "messages": _messages(index, prompt_of(index))}
    )


def _mock_deltas(index: int) -> list[str]:
    return expected_deltas(index, WORDS)


def _held_locks(redis_url: str) -> list[str]:
    """Leases, session gates and channel places still held, and jobs still queued."""
    with redis.Redis.from_url(redis_url) as client:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        held = [key.decode() for pattern in ("aiapi:{*}:lease", "aiapi:{*}:gate") for key in client.scan_iter(pattern)]
        for key in client.scan_iter("aiapi:{channel:*}:running"):
            held += [f"{key.decode()} {member.decode()}" for member in client.zrangebyscore(key, now_ms, "+inf")]
        held += [f"{QUEUE} {job.decode()}" for job in client.zrange(QUEUE, 0, -1)]
    return held


def _locks_clear_within(redis_url: str, timeout_s: float) -> float:
    """Seconds until nothing is held any more; fails after ``timeout_s``."""
    started = time.monotonic()
    while held := _held_locks(redis_url):
        assert time.monotonic() - started < timeout_s, f"{len(held)} locks still held, e.g. {held[:3]}"
        time.sleep(0.1)
    return time.monotonic() - started


def _sessions_admit_again(base_url: str, indices: list[int]) -> None:
    """The sessions of ``indices`` run a new turn: their gates are free and the gateway serves."""
    load = StreamLoad(base_url, indices, body=_chat("fast-mock"), expected=_mock_deltas, deadline_s=20)

    async def drive() -> None:
        await load.start()
        await load.finish()

    uvloop.run(drive())
    assert load.summary()[Outcome.COMPLETE.value] == len(indices), load.summary()


def _store_responses(base_url: str) -> list[dict[str, object]]:
    """Ten stored responses, as created."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        answers = [
            client.post("/responses", json={"model": "fast-mock", "input": f"kept{number}", "store": True})
            for number in range(10)
        ]
    assert all(answer.status_code == 200 for answer in answers)
    return [answer.json() for answer in answers]


def _assert_stored_intact(base_url: str, stored: list[dict[str, object]]) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for before in stored:
            after = client.get(f"/responses/{before['id']}")
            assert after.status_code == 200 and after.json() == before


def _report(
    name: str, records: list[StreamRecord], *, acceptable: set[Outcome] = ACCEPTABLE, **figures: object
) -> dict[str, int]:
    counts = {outcome.value: 0 for outcome in Outcome}
    codes: dict[str, int] = {}
    for record in records:
        counts[record.outcome.value] += 1
        if record.error is not None:
            codes[f"{record.status} {record.error.code}"] = codes.get(f"{record.status} {record.error.code}", 0) + 1
    extra = ", ".join(f"{key} {value}" for key, value in figures.items())
    print(f"\ndrill {name}: {counts}, errors {codes}, {extra}")
    bad = [record for record in records if record.outcome not in acceptable]
    assert not bad, f"{counts}; first: {bad[0]}"
    return counts


def test_drill_worker_killed_under_load(redis_url: str) -> None:
    with GatewayProcesses(redis_url=redis_url, config_toml=SETTINGS + MOCKS, workers=2) as gateway:
        stored = _store_responses(gateway.base_url)
        load = StreamLoad(
            gateway.base_url,
            range(STREAMS),
            body=_chat("drill-mock"),
            expected=_mock_deltas,
            deadline_s=LEASE_TTL_S + 20,
        )
        killed_at = 0.0

        async def drive() -> None:
            nonlocal killed_at
            await load.start()
            await load.wait_for(lambda load: load.with_deltas(3) == STREAMS, timeout_s=15)
            gateway.workers[0].send_signal(signal.SIGKILL)
            killed_at = time.perf_counter()
            await load.finish()

        uvloop.run(drive())
        errored = [record for record in load.records if record.outcome is not Outcome.COMPLETE]
        longest = max((record.ended_at - killed_at for record in errored), default=0.0)
        clear_s = _locks_clear_within(gateway.redis_url, timeout_s=LEASE_TTL_S + 3)
        counts = _report(
            "worker killed",
            load.records,
            last_error_after_kill_s=round(longest, 2),
            locks_clear_after_s=round(clear_s, 2),
        )
        assert counts[Outcome.COMPLETE.value] > 0 and errored, "the kill should hit some streams and spare others"
        assert longest < LEASE_TTL_S + 3
        assert all(record.error is not None and record.error.code == "worker_lost" for record in errored)
        _assert_stored_intact(gateway.base_url, stored)
        _sessions_admit_again(gateway.base_url, [record.index for record in load.records])


@pytest.mark.parametrize("grace_s", [5.0, 0.3])
def test_drill_redis_restarted_under_load(tmp_path: Path, grace_s: float) -> None:
    """Redis down for about a second: streams in flight wait it out and complete when that is within
    ``redis.outage_grace_s``, and end with a clean error chunk when it is not."""
    config = f"[redis]\noutage_grace_s = {grace_s}\n" + SETTINGS + MOCKS
    with (
        EmbeddedRedis(data_dir=tmp_path, persist=True) as server,
        GatewayProcesses(redis_url=server.url, config_toml=config, workers=2) as gateway,
    ):
        stored = _store_responses(gateway.base_url)
        load = StreamLoad(
            gateway.base_url,
            range(STREAMS),
            body=_chat("drill-mock"),
            expected=_mock_deltas,
            deadline_s=LEASE_TTL_S + 25,
        )
        probes: list[tuple[float, float, int]] = []
        """(sent at, seconds to answer, status) of requests sent while Redis goes away and comes back; each
        is a new conversation, so a gate left by an earlier probe cannot turn availability into a 409."""
        probe_body = msgspec.json.encode({"model": "fast-mock", "messages": [{"role": "user", "content": "probe"}]})
        down_at = up_at = 0.0

        async def probe(until: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=15) as prober:
                while not until.is_set():
                    sent = time.perf_counter()
                    answer = await prober.post("/chat/completions", content=probe_body)
                    probes.append((sent, time.perf_counter() - sent, answer.status_code))
                    await asyncio.sleep(0.1)

        async def drive() -> None:
            nonlocal down_at, up_at
            await load.start()
            await load.wait_for(lambda load: load.with_deltas(3) == STREAMS, timeout_s=15)
            stop_probing = asyncio.Event()
            prober = asyncio.create_task(probe(stop_probing))
            down_at = time.perf_counter()
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            up_at = time.perf_counter()
            await load.finish()
            await asyncio.sleep(1.0)
            stop_probing.set()
            await prober

        uvloop.run(drive())
        recovered = next((sent + took for sent, took, status in probes if status == 200 and sent + took > up_at), None)
        clear_s = _locks_clear_within(gateway.redis_url, timeout_s=LEASE_TTL_S + 5)
        statuses = {status: sum(1 for *_, s in probes if s == status) for status in {p[2] for p in probes}}
        counts = _report(
            f"redis restarted (grace {grace_s:g} s)",
            load.records,
            down_s=round(up_at - down_at, 2),
            last_stream_end_after_down_s=round(max(record.ended_at for record in load.records) - down_at, 2),
            probes=statuses,
            slowest_probe_s=round(max(seconds for _, seconds, _ in probes), 2),
            recovered_after_up_s=None if recovered is None else round(recovered - up_at, 2),
            locks_clear_after_s=round(clear_s, 2),
        )
        rode_it_out = grace_s > up_at - down_at + 1
        assert counts[Outcome.COMPLETE.value] == (STREAMS if rode_it_out else 0), counts
        assert rode_it_out or all(record.error and record.error.code == "redis_unavailable" for record in load.records)
        assert max(record.ended_at for record in load.records) - down_at < LEASE_TTL_S + 3
        assert set(statuses) <= {200, 503}, statuses
        assert max(seconds for _, seconds, _ in probes) < 3, "a request hung while Redis was away"
        assert recovered is not None and recovered - up_at < 3
        assert all(status == 200 for sent, _, status in probes if sent >= recovered)
        _assert_stored_intact(gateway.base_url, stored)
        _sessions_admit_again(gateway.base_url, [record.index for record in load.records])


def _echo_words(index: int) -> list[str]:
    return [f"{prompt_of(index)}.{n:02d}" for n in range(WORDS)]


def _echo_chat(index: int) -> bytes:
    # The fake echoes the last user message in 8-character pieces: one word of _echo_words each.
    messages = _messages(index, "".join(_echo_words(index)))
    return msgspec.json.encode({"model": "fake-echo", "stream": True, "messages": messages})


def _upstream_config(base_url: str) -> str:
    return f"""
[[channels]]
name = "fake"
type = "openai"
base_url = "{base_url}"
models = ["fake-echo"]
max_concurrency = 1000
"""


def test_drill_clients_leave_mid_stream(redis_url: str) -> None:
    """Three in four clients leave after three chunks; their upstream calls must end with them."""
    leavers = STREAMS * 3 // 4
    with (
        RunningFakeUpstream(chunks=WORDS, chunk_delay_s=0.2) as upstream,
        GatewayProcesses(
            redis_url=redis_url, config_toml=SETTINGS + MOCKS + _upstream_config(upstream.base_url), workers=2
        ) as gateway,
    ):
        load = StreamLoad(
            gateway.base_url,
            range(STREAMS),
            body=_echo_chat,
            expected=_echo_words,
            deadline_s=20,
            leave_after=lambda index: 3 if index < leavers else None,
        )
        stats: dict[str, int] = {}
        cancelled_after_s = 0.0

        async def drive() -> None:
            nonlocal stats, cancelled_after_s
            await load.start()
            await load.wait_for(lambda load: all(r.ended_at for r in load.records[:leavers]), timeout_s=15)
            left_at = max(record.ended_at for record in load.records[:leavers])
            async with httpx.AsyncClient(base_url=upstream.root_url) as fake:
                while (stats := (await fake.get("/_stats")).json())["disconnects"] < leavers:
                    assert time.perf_counter() - left_at < 3, f"upstream calls still running: {stats}"
                    await asyncio.sleep(0.02)
                cancelled_after_s = time.perf_counter() - left_at
                await load.finish()
                stats = (await fake.get("/_stats")).json()

        uvloop.run(drive())
        clear_s = _locks_clear_within(gateway.redis_url, timeout_s=LEASE_TTL_S + 3)
        counts = _report(
            "clients left",
            load.records,
            acceptable={Outcome.COMPLETE, Outcome.LEFT},
            upstream_cancelled_within_s=round(cancelled_after_s, 2),
            upstream=stats,
            locks_clear_after_s=round(clear_s, 2),
        )
        assert counts[Outcome.LEFT.value] == leavers and counts[Outcome.COMPLETE.value] == STREAMS - leavers
        assert (stats["streams"], stats["open"], stats["disconnects"]) == (STREAMS, 0, leavers)
        _sessions_admit_again(gateway.base_url, list(range(leavers)))


def test_drill_api_killed_under_load(redis_url: str) -> None:
    """The API instance holding every stream dies. Nobody can receive those generations any more, so the
    workers stop them, and their upstream calls, once its presence has lapsed; a new instance serves the
    same conversations."""
    presence_ttl_s = 1.5
    settings = SETTINGS + f"presence_ttl_s = {presence_ttl_s}\n"  # SETTINGS ends in [relay]
    with (
        RunningFakeUpstream(chunks=WORDS, chunk_delay_s=0.5) as upstream,
        GatewayProcesses(
            redis_url=redis_url, config_toml=settings + MOCKS + _upstream_config(upstream.base_url), workers=2
        ) as gateway,
    ):
        load = StreamLoad(gateway.base_url, range(STREAMS), body=_echo_chat, expected=_echo_words, deadline_s=20)
        stats: dict[str, int] = {}
        stopped_after_s = 0.0

        async def drive() -> None:
            nonlocal stats, stopped_after_s
            await load.start()
            await load.wait_for(lambda load: load.with_deltas(2) == STREAMS, timeout_s=15)
            gateway.kill_api()
            killed_at = time.perf_counter()
            await load.finish()
            async with httpx.AsyncClient(base_url=upstream.root_url) as fake:
                while (stats := (await fake.get("/_stats")).json())["open"]:
                    assert time.perf_counter() - killed_at < presence_ttl_s + 2 * LEASE_TTL_S / 3 + 3, stats
                    await asyncio.sleep(0.05)
            stopped_after_s = time.perf_counter() - killed_at

        uvloop.run(drive())
        clear_s = _locks_clear_within(gateway.redis_url, timeout_s=LEASE_TTL_S)
        _report(
            "API killed",
            load.records,
            acceptable={Outcome.BROKEN},
            upstream_stopped_after_s=round(stopped_after_s, 2),
            upstream=stats,
            locks_clear_after_s=round(clear_s, 2),
        )
        assert all(record.prefix_ok and record.problem for record in load.records), "dropped, not corrupted"
        assert stats["disconnects"] == STREAMS, "every upstream call was stopped, none ran to its end"
        gateway.start_api()
        _sessions_admit_again(gateway.base_url, list(range(STREAMS)))
