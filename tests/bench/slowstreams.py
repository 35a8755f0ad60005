"""Many slow streams: thousands of long generations held at once, the gateway against its upstream direct.

    python -m tests.bench.slowstreams [--streams 5000] [--chunks 20] [--delay 1.0] [--out -]

Long, slow generations (reasoning models, agents) hold a connection for their whole length while they
cost little per second. This holds ``--streams`` of them at once through one API process and two workers,
and the same load against the fake upstream directly, in the same run, and reports how much the gateway
delays chunks beyond what the upstream itself does (the p99 gap between chunks), each process's peak
RSS, and the CPU spent per chunk relayed. The client is a bare asyncio protocol per stream, so that it
adds next to nothing itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from shared.redis_server import EmbeddedRedis
from tests.bench.cpu import CpuMeter
from tests.bench.hotpath import BENCH_KEY, MODEL, _config, _redis_pid
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

_CONTENT = b'"content":"'
_END = b"0\r\n\r\n"
_ERROR = b'"error":'


def _content_chunks(data: bytes) -> int:
    """How many SSE chunks in ``data`` carry text (the role chunk and the usage chunk carry none)."""
    count, position = 0, data.find(_CONTENT)
    while position >= 0:
        following = data[position + len(_CONTENT) : position + len(_CONTENT) + 1]
        count += bool(following and following != b'"')
        position = data.find(_CONTENT, position + 1)
    return count


@dataclass(slots=True)
class _Stream(asyncio.Protocol):
    request: bytes
    done: asyncio.Future[None]
    arrivals: list[float] = field(default_factory=list)
    tail: bytes = b""
    failed: bool = False
    error: bytes = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.arrivals and not self.tail and not data.startswith(b"HTTP/1.1 200"):
            self.failed = True
        # A chunk marker may be split across reads: look at the joint with the previous read too.
        joined = self.tail + data
        if _ERROR in data and not self.error:
            self.failed, self.error = True, data[data.find(_ERROR) : data.find(_ERROR) + 300]
        self.arrivals += [now] * _content_chunks(joined)
        self.tail = joined[-16:] if _CONTENT not in joined[-16:] else b""
        if joined.endswith(_END) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.failed = True
            self.done.set_result(None)


@dataclass
class Figures:
    streams: int
    failed: int
    errors: list[bytes]
    gap_p50_s: float
    gap_p99_s: float
    gap_max_s: float
    chunks: int


def _request(url: str) -> bytes:
    parts = urlsplit(url)
    body = msgspec.json.encode(
        {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Think slowly."}]}
    )
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {BENCH_KEY}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def _hold(url: str, *, streams: int, ramp_s: float, timeout_s: float) -> Figures:
    """Open ``streams`` streams spread over ``ramp_s``, wait for all of them to end, and measure the gaps."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    request = _request(url)
    held: list[_Stream] = []
    for index in range(streams):
        stream = _Stream(request, loop.create_future())
        try:
            await loop.create_connection(lambda stream=stream: stream, parts.hostname, parts.port)  # type: ignore[misc]
        except OSError:
            stream.failed = True
            stream.done.set_result(None)
        held.append(stream)
        if index % 50 == 49:
            await asyncio.sleep(ramp_s * 50 / streams)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(stream.done for stream in held)), timeout_s)
    gaps = sorted(
        later - earlier for stream in held for earlier, later in zip(stream.arrivals, stream.arrivals[1:], strict=False)
    )
    failed = sum(stream.failed or not stream.done.done() for stream in held)
    return Figures(
        streams=streams,
        failed=failed,
        errors=sorted({stream.error for stream in held if stream.error})[:5],
        gap_p50_s=statistics.median(gaps) if gaps else 0.0,
        gap_p99_s=gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] if gaps else 0.0,
        gap_max_s=gaps[-1] if gaps else 0.0,
        chunks=sum(len(stream.arrivals) for stream in held),
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _slow_config(upstream: str, streams: int) -> str:
    # Every stream holds an upstream connection for its whole length: the channel must allow that many.
    channel = _config(upstream) + f"max_connections = {streams}\n"
    # And the API must accept that many connections at once (its default cap is 1,024).
    server = f"\n[server]\nmax_connections = {streams + 100}\n"
    return channel + server + f"\n[worker]\nmax_jobs = {streams}\n\n[relay]\nqueue_timeout_s = 60\n"


async def _run(args: argparse.Namespace) -> str:
    timeout_s = args.ramp + args.chunks * args.delay + 60
    with tempfile.TemporaryDirectory() as data, RunningFakeUpstream(chunks=args.chunks, chunk_delay_s=args.delay) as up:
        embedded = EmbeddedRedis(data_dir=Path(data), persist=False)
        redis_url = embedded.start()
        try:
            direct = await _hold(
                f"{up.base_url}/chat/completions", streams=args.streams, ramp_s=args.ramp, timeout_s=timeout_s
            )
            with GatewayProcesses(
                redis_url=redis_url,
                config_toml=_slow_config(up.base_url, args.streams),
                workers=2,
                env={"AIAPI_BENCH_KEY": BENCH_KEY},
            ) as gateway:
                processes = {"api": gateway.pids[0], "worker 1": gateway.pids[1], "worker 2": gateway.pids[2]}
                processes["redis"] = _redis_pid(redis_url)
                meters = {name: CpuMeter([pid]) for name, pid in processes.items()}
                for meter in meters.values():
                    meter.start()
                through = await _hold(
                    f"{gateway.base_url}/chat/completions", streams=args.streams, ramp_s=args.ramp, timeout_s=timeout_s
                )
                cpu = {name: meter.stop() for name, meter in meters.items()}
                rss = {name: _peak_rss_mb(pid) for name, pid in processes.items()}
        finally:
            embedded.stop()
    rows = [
        ("streams failed", f"{direct.failed}", f"{through.failed}"),
        ("chunks received", f"{direct.chunks}", f"{through.chunks}"),
        ("gap between chunks p50 (s)", f"{direct.gap_p50_s:.3f}", f"{through.gap_p50_s:.3f}"),
        ("gap between chunks p99 (s)", f"{direct.gap_p99_s:.3f}", f"{through.gap_p99_s:.3f}"),
        ("gap between chunks max (s)", f"{direct.gap_max_s:.3f}", f"{through.gap_max_s:.3f}"),
    ]
    chunks = max(1, through.chunks)
    errors = [f"- `{error.decode(errors='replace')}`" for error in through.errors]
    return "\n".join(
        [
            f"{args.streams} concurrent streams of {args.chunks} chunks {args.delay:g} s apart, opened over "
            f"{args.ramp:g} s; the fake upstream directly, then the gateway (one API process, two workers, Redis) "
            f"in front of it, in the same run.",
            "",
            "| measure | upstream direct | through the gateway |",
            "|---|---:|---:|",
            *(f"| {label} | {d} | {g} |" for label, d, g in rows),
            "",
            f"Delay the gateway adds at p99: **{(through.gap_p99_s - direct.gap_p99_s) * 1000:.0f} ms**. "
            f"CPU per chunk relayed (API + workers + Redis): **{sum(cpu.values()) * 1e6 / chunks:.0f} µs** ("
            + ", ".join(f"{name} {seconds * 1e6 / chunks:.0f}" for name, seconds in cpu.items())
            + "). "
            "Peak RSS: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()) + ".",
            *(["", "Errors seen through the gateway:", *errors] if errors else []),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the streams are opened")
    parser.add_argument("--out", default="-")
    args = parser.parse_args()
    report = asyncio.run(_run(args))
    print(report)
    if args.out != "-":
        Path(args.out).write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
