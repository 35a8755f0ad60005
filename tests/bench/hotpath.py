"""The hot-path benchmark: the gateway against calling its upstream directly, in the same run.

    python -m tests.bench.hotpath [--quick] [--out docs/benchmark.md]

Starts a private Redis (unless REDIS_URL is set), the fake OpenAI upstream (20-chunk streams), and the
gateway as separate processes (one API, one worker), then measures, for the upstream directly and for
the gateway in front of it: time to first token and total time at concurrency 1, streams/s at
concurrency 32, and non-streaming requests/s at concurrency 32. Figures are written to ``--out``.
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

from shared.redis_server import EmbeddedRedis
from tests.bench.loadgen import Sample, run_load
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

MODEL = "fake-model"


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
    errors: int


async def _latency(urls: list[str], *, total: int, rounds: int = 6) -> list[list[Sample]]:
    """Sequential streams against each URL, interleaved in rounds so machine noise hits both alike."""
    samples: list[list[Sample]] = [[] for _ in urls]
    for _ in range(rounds):
        for index, url in enumerate(urls):
            batch, _ = await run_load(url, _body(True), concurrency=1, requests=total // rounds, duration_s=None)
            samples[index] += batch
    return samples


async def _throughput(url: str, *, load_s: float) -> tuple[float, float, list[Sample]]:
    streams, stream_elapsed = await run_load(url, _body(True), concurrency=32, requests=None, duration_s=load_s)
    plains, plain_elapsed = await run_load(url, _body(False), concurrency=32, requests=None, duration_s=load_s)
    return sum(s.ok for s in streams) / stream_elapsed, sum(s.ok for s in plains) / plain_elapsed, streams + plains


async def _measure(urls: list[str], *, latency_n: int, load_s: float) -> list[Figures]:
    for url in urls:
        await run_load(url, _body(True), concurrency=4, requests=100, duration_s=None)  # warm-up: connections, caches
    figures = []
    for url, latency in zip(urls, await _latency(urls, total=latency_n), strict=True):
        streams_per_s, requests_per_s, loaded = await _throughput(url, load_s=load_s)
        figures.append(
            Figures(
                ttft_p50_ms=statistics.median(s.ttft_s for s in latency) * 1000,
                ttft_p95_ms=_pct([s.ttft_s for s in latency], 0.95) * 1000,
                total_p50_ms=statistics.median(s.total_s for s in latency) * 1000,
                streams_per_s=streams_per_s,
                requests_per_s=requests_per_s,
                errors=sum(not s.ok for s in latency + loaded),
            )
        )
    return figures


def _config(upstream: str) -> str:
    return f"""
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
            f"{os.cpu_count()} cores, Python {platform.python_version()}; one API process, one worker process, "
            f"Redis, fake upstream and load generator on the same machine. {args.latency_n} sequential streams "
            f"each for latency (direct and gateway alternating in 6 rounds), {args.load_s:g} s of load per "
            f"throughput row. Errors: direct {direct.errors}, gateway {gateway.errors}.",
            "",
            *lines,
            "",
            f"Added time to first token at p50: **{added:.2f} ms**.",
        ]
    )


async def _main(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as data, RunningFakeUpstream(chunks=20) as upstream:
        embedded = None if os.environ.get("REDIS_URL") else EmbeddedRedis(data_dir=Path(data), persist=False)
        redis_url = os.environ.get("REDIS_URL") or embedded.start()  # type: ignore[union-attr]
        try:
            with GatewayProcesses(redis_url=redis_url, config_toml=_config(upstream.base_url)) as gateway:
                urls = [f"{upstream.base_url}/chat/completions", f"{gateway.base_url}/chat/completions"]
                direct, through = await _measure(urls, latency_n=args.latency_n, load_s=args.load_s)
        finally:
            if embedded is not None:
                embedded.stop()
    return _report(direct, through, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run, for a smoke test")
    parser.add_argument("--out", default="docs/benchmark.md")
    args = parser.parse_args()
    args.latency_n, args.load_s = (50, 2.0) if args.quick else (300, 8.0)
    report = asyncio.run(_main(args))
    print(report)
    if args.out != "-":
        path = Path(args.out)
        header = "# Hot-path benchmark\n\nProduced by `make bench` (`python -m tests.bench.hotpath`).\n\n"
        path.write_text(header + report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
