"""What the ledger costs on the hot path: the same gateway with the ledger off and on, interleaved.

    python -m tests.bench.ledger_ab [--rounds 8] [--per-round 100] [--load-s 4]

Two gateways (an API and a worker each; the "on" one with prices and a recorder writing to SQLite) share
one Redis (separate databases) and one fake upstream. Latency is measured in rounds of sequential
streams, alternating off/on within each round so that machine noise hits both alike; then streams/s at
c=32 and CPU per stream (API + worker + Redis, plus the recorder when on), alternating too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from shared.redis_server import EmbeddedRedis
from tests.bench.cpu import CpuMeter
from tests.bench.hotpath import BENCH_KEY, _body, _config, _pct, _redis_pid
from tests.bench.loadgen import Sample, run_load
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses


async def _ab(urls: dict[str, str], meters: dict[str, CpuMeter], args: argparse.Namespace) -> str:
    for url in urls.values():
        await run_load(url, _body(True), concurrency=4, requests=100, duration_s=None)
    latency: dict[str, list[Sample]] = {name: [] for name in urls}
    medians: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            batch, _ = await run_load(url, _body(True), concurrency=1, requests=args.per_round, duration_s=None)
            latency[name] += batch
            medians[name].append(statistics.median(s.ttft_s for s in batch) * 1000)
    rates: dict[str, list[float]] = {name: [] for name in urls}
    cpu: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(2):
        for name, url in urls.items():
            meters[name].start()
            samples, elapsed = await run_load(url, _body(True), concurrency=32, requests=None, duration_s=args.load_s)
            done = max(1, sum(s.ok for s in samples))
            cpu[name].append(meters[name].stop() * 1000 / done)
            rates[name].append(done / elapsed)
    lines = [
        "| ledger | TTFT p50 ms | TTFT p95 ms | total p50 ms | round p50s | streams/s c=32 | CPU ms/stream |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for name in urls:
        ttft = [s.ttft_s * 1000 for s in latency[name]]
        lines.append(
            f"| {name} | {statistics.median(ttft):.3f} | {_pct(ttft, 0.95):.3f} | "
            f"{statistics.median(s.total_s for s in latency[name]) * 1000:.3f} | "
            f"{min(medians[name]):.3f} to {max(medians[name]):.3f} | {statistics.mean(rates[name]):.0f} | "
            f"{statistics.mean(cpu[name]):.2f} |"
        )
    errors = {name: sum(not s.ok for s in latency[name]) for name in urls}
    return "\n".join([*lines, "", f"{args.rounds} rounds of {args.per_round} streams each; errors {errors}"])


async def _main(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as data, RunningFakeUpstream(chunks=20) as upstream:
        embedded = EmbeddedRedis(data_dir=Path(data), persist=False)
        redis_url = embedded.start()
        env = {"AIAPI_BENCH_KEY": BENCH_KEY}
        try:
            with (
                GatewayProcesses(
                    redis_url=redis_url, config_toml=_config(upstream.base_url, ledger=False), env=env
                ) as off,
                GatewayProcesses(
                    redis_url=redis_url, config_toml=_config(upstream.base_url, ledger=not args.a_a), env=env
                ) as on,
            ):
                recorder = None if args.no_recorder else on.start_recorder()
                redis_pid = _redis_pid(redis_url)
                urls = {"off": f"{off.base_url}/chat/completions", "on": f"{on.base_url}/chat/completions"}
                meters = {
                    "off": CpuMeter([*off.pids, redis_pid]),
                    "on": CpuMeter([*on.pids, *([recorder.pid] if recorder else []), redis_pid]),
                }
                return await _ab(urls, meters, args)
        finally:
            embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--load-s", type=float, default=4.0)
    parser.add_argument("--a-a", action="store_true", help="calibration: both gateways with the ledger off")
    parser.add_argument("--no-recorder", action="store_true", help="records pile up in the stream: the workers' share")
    print(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
