"""A soak: 1,000 streaming chat completions held open at once through the real API and two workers.

Every stream must carry exactly its expected content, each chunk once and in order, then a finish
reason and ``[DONE]``. The figures (time, streams/s, time to first token, peak RSS) are printed for
docs/faults.md.
"""

from __future__ import annotations

import asyncio
import resource

import msgspec
import pytest
import uvloop

from tests.harness import GatewayProcesses
from tests.streams import (
    Outcome,
    StreamLoad,
    expected_deltas,
    mock_reply,
    percentile,
    process_fds,
    process_peak_rss_mb,
    prompt_of,
)

pytestmark = pytest.mark.e2e

STREAMS = 1000
WORDS = 20
TOKENS_PER_SECOND = 2.5

CONFIG = f"""
[worker]
max_jobs = {STREAMS}

[[channels]]
name = "soak"
type = "mock"
models = ["soak-mock"]
tokens_per_second = {TOKENS_PER_SECOND}
reply = "{mock_reply(WORDS)}"
"""


def _body(index: int) -> bytes:
    return msgspec.json.encode(
        {"model": "soak-mock", "stream": True, "messages": [{"role": "user", "content": prompt_of(index)}]}
    )


def _raise_fd_limit(needed: int) -> None:
    """Let this process (and the gateway processes it starts, which inherit it) hold ``needed`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"the open-files limit is {hard}; the soak needs {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_a_thousand_streams_at_once(redis_url: str) -> None:
    _raise_fd_limit(4 * STREAMS)
    with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG, workers=2) as gateway:
        assert gateway.api is not None
        api_pid = gateway.api.pid
        _, api_limit = process_fds(api_pid)
        assert api_limit >= 3 * STREAMS, "the API could not hold a socket per client plus its Redis connections"
        load = StreamLoad(
            gateway.base_url, range(STREAMS), body=_body, expected=lambda i: expected_deltas(i, WORDS), deadline_s=60
        )
        peak_fds = 0

        async def drive() -> None:
            nonlocal peak_fds
            await load.start()
            finished = asyncio.ensure_future(load.finish())
            while not finished.done():
                peak_fds = max(peak_fds, process_fds(api_pid)[0])
                await asyncio.sleep(0.25)
            await finished

        uvloop.run(drive())
        api_rss = process_peak_rss_mb(api_pid)
        worker_rss = [process_peak_rss_mb(worker.pid) for worker in gateway.workers]

    records = load.records
    summary = load.summary()
    lost = sum(record.lost for record in records)
    duplicated = sum(record.duplicated for record in records)
    ttft = [record.ttft_s for record in records if record.ttft_s is not None]
    chunks = sum(len(record.deltas) for record in records)
    print(
        f"\nsoak: {STREAMS} streams x {WORDS} chunks at {TOKENS_PER_SECOND}/s: {summary}, lost {lost}, "
        f"duplicated {duplicated}; all {load.peak_open} open after {load.peak_open_after_s:.2f} s; "
        f"total {load.elapsed_s:.2f} s, {STREAMS / load.elapsed_s:.0f} streams/s, "
        f"{chunks / load.elapsed_s:.0f} chunks/s; ttft p50 {percentile(ttft, 0.5) * 1000:.0f} ms "
        f"p99 {percentile(ttft, 0.99) * 1000:.0f} ms; API peak RSS {api_rss:.0f} MiB, peak fds {peak_fds} "
        f"(limit {api_limit}); workers' peak RSS {', '.join(f'{rss:.0f}' for rss in worker_rss)} MiB"
    )
    broken = [record for record in records if record.outcome is not Outcome.COMPLETE]
    assert not broken, f"{summary}; first: {broken[0]}"
    assert lost == duplicated == 0
    assert load.peak_open == STREAMS, "the streams were not all open at the same time"
