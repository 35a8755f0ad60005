"""The hot-path benchmark: the gateway against calling its upstream directly, in the same run.

    python -m tests.bench.hotpath [--quick] [--processes N] [--out docs/benchmark.md]

Starts a private Redis (unless REDIS_URL is set), the fake OpenAI upstream (20-chunk streams), and the
gateway with ``aiapi up`` as it lays itself out (one API and one worker process per core, the recorder;
``--processes N``: N of each, 1 for the one-API-one-worker layout), then measures, for the upstream
directly and for the gateway in front of it: time to first token and total time at concurrency 1,
streams/s at concurrency 32, non-streaming requests/s at concurrency 32, and the CPU time spent per
request in each throughput row (the fake's alone when direct; through the gateway, that of every process
``aiapi up`` runs and of Redis).
The gateway runs with its features on, as operators run it: keys mode with limits and usage accounting,
sessions in hash mode, metrics and logs, the ledger with prices and a recorder writing to SQLite (its CPU
counted with the gateway's). Figures are written to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis

from shared.redis_server import EmbeddedRedis
from tests.bench.cpu import CpuMeter
from tests.bench.loadgen import Sample, run_load
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayUp

MODEL = "fake-model"
BENCH_KEY = "bench"
"""The bearer token the load generator sends; the gateway's one configured key."""


def _body(stream: bool) -> bytes:
    payload: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}]}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return msgspec.json.encode(payload)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    ttft_p50_ms: float
    ttft_p95_ms: float
    total_p50_ms: float
    streams_per_s: float
    requests_per_s: float
    stream_cpu_ms: float
    """CPU milliseconds per 20-chunk stream at c=32, summed over the processes measured."""
    request_cpu_ms: float
    """The same per non-streaming request."""
    errors: int


async def _latency(urls: list[str], *, total: int, rounds: int = 6) -> list[list[Sample]]:
    """Sequential streams against each URL, interleaved in rounds so machine noise hits both alike."""
    samples: list[list[Sample]] = [[] for _ in urls]
    for _ in range(rounds):
        for index, url in enumerate(urls):
            batch, _ = await run_load(url, _body(True), concurrency=1, requests=total // rounds, duration_s=None)
            samples[index] += batch
    return samples


@dataclass
class _Row:
    per_s: float
    cpu_ms: float
    samples: list[Sample]


async def _loaded(url: str, body: bytes, meter: CpuMeter, *, load_s: float) -> _Row:
    meter.start()
    samples, elapsed = await run_load(url, body, concurrency=32, requests=None, duration_s=load_s)
    cpu_s = meter.stop()
    done = max(1, sum(s.ok for s in samples))
    return _Row(done / elapsed, cpu_s * 1000 / done, samples)


async def _measure(urls: list[str], meters: list[CpuMeter], *, latency_n: int, load_s: float) -> list[Figures]:
    for url in urls:
        await run_load(url, _body(True), concurrency=4, requests=100, duration_s=None)  # warm-up: connections, caches
    figures = []
    for url, meter, latency in zip(urls, meters, await _latency(urls, total=latency_n), strict=True):
        streams = await _loaded(url, _body(True), meter, load_s=load_s)
        plains = await _loaded(url, _body(False), meter, load_s=load_s)
        loaded = streams.samples + plains.samples
        figures.append(
            Figures(
                ttft_p50_ms=statistics.median(s.ttft_s for s in latency) * 1000,
                ttft_p95_ms=_pct([s.ttft_s for s in latency], 0.95) * 1000,
                total_p50_ms=statistics.median(s.total_s for s in latency) * 1000,
                streams_per_s=streams.per_s,
                requests_per_s=plains.per_s,
                stream_cpu_ms=streams.cpu_ms,
                request_cpu_ms=plains.cpu_ms,
                errors=sum(not s.ok for s in latency + loaded),
            )
        )
    return figures


def _config(upstream: str, *, ledger: bool = True) -> str:
    return f"""
[ledger]
enabled = {str(ledger).lower()}

[prices."{MODEL}"]
input = 0.15
output = 0.60

[access]
mode = "keys"

[[access.keys]]
name = "bench"
key_env = "AIAPI_BENCH_KEY"
rpm = 100000000
tpm = 100000000000

[sessions]
mode = "hash"

[[channels]]
name = "fake"
type = "openai"
base_url = "{upstream}"
models = ["{MODEL}"]
"""


def _report(direct: Figures, gateway: Figures, args: argparse.Namespace) -> str:
    rows = [
        ("time to first token p50 (ms, c=1)", "ttft_p50_ms", False),
        ("time to first token p95 (ms, c=1)", "ttft_p95_ms", False),
        ("total time p50 (ms, c=1, 20 chunks)", "total_p50_ms", False),
        ("20-chunk streams/s (c=32)", "streams_per_s", True),
        ("non-streaming requests/s (c=32)", "requests_per_s", True),
        ("CPU ms per 20-chunk stream (c=32)", "stream_cpu_ms", False),
        ("CPU ms per non-streaming request (c=32)", "request_cpu_ms", False),
    ]
    lines = [
        "| measure | upstream direct | through the gateway | gateway / direct |",
        "|---|---:|---:|---:|",
    ]
    for label, key, _higher in rows:
        d, g = getattr(direct, key), getattr(gateway, key)
        lines.append(f"| {label} | {d:.2f} | {g:.2f} | {g / d:.2f}x |")
    added = gateway.ttft_p50_ms - direct.ttft_p50_ms
    return "\n".join(
        [
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; `aiapi up` with {args.layout}, "
            f"Redis, fake upstream and load generator on the same machine. The gateway in keys mode with limits "
            f"and usage accounting, hash sessions, metrics, logs and the ledger (recorder to SQLite) on. "
            f"{args.latency_n} sequential streams "
            f"each for latency (direct and gateway alternating in 6 rounds), {args.load_s:g} s of load per "
            f"throughput row. CPU time is read from /proc around each throughput row: the fake upstream's alone "
            f"when direct; every process of `aiapi up` (API processes, workers, recorder, supervisor) + Redis through "
            f"the gateway (the fake's own share is the direct figure). "
            f"Errors: direct {direct.errors}, gateway {gateway.errors}.",
            "",
            *lines,
            "",
            f"Added time to first token at p50: **{added:.2f} ms**.",
        ]
    )


def _redis_pid(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        info = client.info("server")
    return int(info["process_id"])


async def _main(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as data, RunningFakeUpstream(chunks=20) as upstream:
        embedded = None if os.environ.get("REDIS_URL") else EmbeddedRedis(data_dir=Path(data), persist=False)
        redis_url = os.environ.get("REDIS_URL") or embedded.start()  # type: ignore[union-attr]
        try:
            with GatewayUp(
                redis_url=redis_url,
                config_toml=_config(upstream.base_url),
                api=args.processes,
                workers=args.processes,
                env={"AIAPI_BENCH_KEY": BENCH_KEY},
            ) as gateway:
                args.layout = f"{len(gateway.apis())} API process(es), {len(gateway.workers())} worker(s), the recorder"
                urls = [f"{upstream.base_url}/chat/completions", f"{gateway.base_url}/chat/completions"]
                meters = [CpuMeter([upstream.pid]), CpuMeter([*gateway.pids, _redis_pid(redis_url)])]
                direct, through = await _measure(urls, meters, latency_n=args.latency_n, load_s=args.load_s)
        finally:
            if embedded is not None:
                embedded.stop()
    return _report(direct, through, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run, for a smoke test")
    parser.add_argument(
        "--processes", type=int, help="API and worker processes each (default: aiapi up's, one per core)"
    )
    parser.add_argument("--out", default="docs/benchmark.md")
    args = parser.parse_args()
    args.latency_n, args.load_s = (50, 2.0) if args.quick else (300, 8.0)
    report = asyncio.run(_main(args))
    print(report)
    if args.out != "-":
        path = Path(args.out)
        header = (
            "# Hot-path benchmark\n\nProduced by `make bench` (`python -m tests.bench.hotpath`), which runs the "
            "gateway as `aiapi up` lays it out: one API process and one worker process per core (the API processes "
            "sharing the port with SO_REUSEPORT), the recorder, against the bench's Redis; the CPU per request is "
            "that of every process `aiapi up` runs plus Redis's. `--processes N` runs N API and N worker processes; "
            "`--processes 1` is the one-API-one-worker layout.\n\n"
        )
        # Sections after the hot path's own (other benches' figures, written by hand) are kept.
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        kept = old[old.index("\n## ") :] if "\n## " in old else ""
        path.write_text(header + report + "\n" + kept, encoding="utf-8")


if __name__ == "__main__":
    main()
