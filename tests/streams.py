"""Many chat completion streams at once over real sockets, each checked against the exact reply it must carry.

The gateway's ``mock`` channel answers ``reply`` with ``{prompt}`` replaced by the last user message, one
word per chunk. :func:`mock_reply` makes every word name its stream and position (``s0042.07``), so a
record can tell a lost event from a duplicated, reordered or foreign one. :class:`StreamLoad` runs the
streams over plain asyncio sockets with a lean HTTP/1.1 client (httpx costs ~5x the CPU, which on a
small machine the gateway would feel), and lets a test act on the load while it is in flight.
"""

from __future__ import annotations

import asyncio
import enum
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

__all__ = (
    "Outcome",
    "StreamLoad",
    "StreamRecord",
    "drill_channels",
    "expected_deltas",
    "mock_reply",
    "percentile",
    "process_fds",
    "process_peak_rss_mb",
    "prompt_of",
)


def mock_reply(words: int) -> str:
    """The ``reply`` of a mock channel whose words are ``<prompt>.<position>``."""
    return " ".join(f"{{prompt}}.{i:02d}" for i in range(words))


def prompt_of(index: int) -> str:
    return f"s{index:04d}"


def expected_deltas(index: int, words: int) -> list[str]:
    """The content deltas, in order, of stream ``index`` against :func:`mock_reply`."""
    prompt = prompt_of(index)
    return [("" if i == 0 else " ") + f"{prompt}.{i:02d}" for i in range(words)]


class Outcome(enum.Enum):
    COMPLETE = "complete"
    """Exactly the expected content, a finish reason, then ``[DONE]``."""
    HTTP_ERROR = "http error"
    """An OpenAI-shaped error with a non-200 status, before any output."""
    ERROR_CHUNK = "error chunk"
    """Output, then an OpenAI-shaped error chunk ending the stream; what came before it was correct."""
    LEFT = "left"
    """The client went away on purpose, after the content it wanted arrived correctly."""
    HUNG = "hung"
    """Nothing ended the stream within the load's deadline."""
    BROKEN = "broken"
    """Anything else: wrong, lost or repeated content, a bad error shape, a dropped connection."""


class _ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    error: _ErrorDetail | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


@dataclass(slots=True)
class StreamRecord:
    index: int
    expected: list[str]
    leave_after: int | None = None
    status: int = 0
    deltas: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    done: bool = False
    after_done: int = 0
    """Frames received after ``[DONE]``: there must be none."""
    error: _ErrorDetail | None = None
    problem: str | None = None
    """A transport failure or a frame that is not what the wire format allows."""
    left: bool = False
    hung: bool = False
    ttft_s: float | None = None
    total_s: float = 0.0
    ended_at: float = 0.0
    """``time.perf_counter()`` when the stream ended, for timing it against a fault."""

    @property
    def lost(self) -> int:
        """Expected deltas missing from what arrived (only counted for streams that completed)."""
        if not self.done:
            return 0
        return sum(1 for delta in set(self.expected) if delta not in self.deltas)

    @property
    def duplicated(self) -> int:
        return len(self.deltas) - len(set(self.deltas))

    @property
    def prefix_ok(self) -> bool:
        """What arrived is the start of the expected content, each delta once, in order."""
        return self.deltas == self.expected[: len(self.deltas)]

    @property
    def outcome(self) -> Outcome:
        if self.hung:
            return Outcome.HUNG
        if self.problem is not None or self.after_done or not self.prefix_ok:
            return Outcome.BROKEN
        if self.status != 200:
            return Outcome.HTTP_ERROR if self.status and self.error is not None else Outcome.BROKEN
        if self.left:
            return Outcome.LEFT
        if self.error is not None:
            return Outcome.ERROR_CHUNK if self.finish_reason is None and not self.done else Outcome.BROKEN
        if self.done and self.finish_reason == "stop" and self.deltas == self.expected:
            return Outcome.COMPLETE
        return Outcome.BROKEN


class StreamLoad:
    """A streaming chat completion to ``base_url`` (``…/v1``) for each of ``indices``, all started at once.

    ``body(index)`` builds each request and ``expected(index)`` names its content deltas; the client of a
    stream for which ``leave_after(index)`` is a number disconnects once it has that many deltas. Streams
    still open after ``deadline_s`` are recorded as hung.
    """

    def __init__(
        self,
        base_url: str,
        indices: Iterable[int],
        *,
        body: Callable[[int], bytes],
        expected: Callable[[int], list[str]],
        deadline_s: float,
        leave_after: Callable[[int], int | None] = lambda _: None,
    ) -> None:
        url = urlsplit(f"{base_url}/chat/completions")
        assert url.hostname is not None and url.port is not None
        self._host, self._port = url.hostname, url.port
        self._head = (
            f"POST {url.path} HTTP/1.1\r\nhost: {url.netloc}\r\ncontent-type: application/json\r\n"
            "authorization: Bearer load\r\n"
        ).encode()
        self._body = body
        self._deadline_s = deadline_s
        self.records = [StreamRecord(i, expected(i), leave_after(i)) for i in indices]
        self.open = 0
        """Streams whose response has begun and not yet ended."""
        self.peak_open = 0
        self.peak_open_after_s = 0.0
        """Seconds from the start until ``peak_open`` streams were open at once."""
        self.started_at = 0.0
        self.elapsed_s = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.started_at = time.perf_counter()
        self._tasks = [asyncio.create_task(self._run(record)) for record in self.records]

    async def wait_for(self, condition: Callable[[StreamLoad], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"load condition not reached in {timeout_s} s: {self.summary()}")
            await asyncio.sleep(0.02)

    async def finish(self) -> list[StreamRecord]:
        await asyncio.gather(*self._tasks)
        self.elapsed_s = time.perf_counter() - self.started_at
        return self.records

    def with_deltas(self, at_least: int) -> int:
        return sum(1 for record in self.records if len(record.deltas) >= at_least)

    def summary(self) -> dict[str, int]:
        counts = {outcome.value: 0 for outcome in Outcome}
        for record in self.records:
            counts[record.outcome.value] += 1
        return counts

    async def _run(self, record: StreamRecord) -> None:
        started = time.perf_counter()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._deadline_s):
                reader, writer = await asyncio.open_connection(self._host, self._port)
                body = self._body(record.index)
                writer.write(self._head + b"content-length: %d\r\n\r\n" % len(body) + body)
                await self._response(reader, record, started)
        except TimeoutError:
            record.hung = True
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, msgspec.DecodeError) as exc:
            record.problem = f"{type(exc).__name__}: {exc}"
        finally:
            # Closing the socket is also how a leaving client goes away.
            if writer is not None:
                writer.close()
            record.ended_at = time.perf_counter()
            record.total_s = record.ended_at - started

    async def _response(self, reader: asyncio.StreamReader, record: StreamRecord, started: float) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        record.status = int(head.split(b" ", 2)[1])
        if b"\r\ntransfer-encoding: chunked\r\n" not in head:
            if record.status == 200 or b"\r\ncontent-length:" not in head:
                raise ValueError(f"neither a stream nor an error: {head!r}")
            length = int(head.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
            record.error = _error_decoder.decode(await reader.readexactly(length)).error
            return
        if record.status != 200:
            raise ValueError(f"an error status with a streamed body: {head!r}")
        self.open += 1
        if self.open > self.peak_open:
            self.peak_open = self.open
            self.peak_open_after_s = time.perf_counter() - self.started_at
        try:
            pending = b""
            async for piece in _chunks(reader):
                *frames, pending = (pending + piece).split(b"\n\n")
                for frame in frames:
                    if self._read_frame(record, frame, started):
                        record.left = True
                        return
            if pending or (not record.done and record.error is None):
                record.problem = f"the stream ended without [DONE] or an error ({pending!r} left over)"
        finally:
            self.open -= 1

    def _read_frame(self, record: StreamRecord, frame: bytes, started: float) -> bool:
        """Take one SSE frame in; say whether the client should leave now."""
        if frame.startswith(b":"):
            return False  # a keep-alive comment
        if not frame.startswith(b"data: "):
            raise ValueError(f"not an SSE data frame: {frame[:80]!r}")
        if record.done:
            record.after_done += 1
            return False
        if frame == b"data: [DONE]":
            record.done = True
            return False
        return self._read_chunk(record, _chunk_decoder.decode(frame[6:]), started)

    def _read_chunk(self, record: StreamRecord, chunk: _Chunk, started: float) -> bool:
        """Take one chunk in; say whether the client should leave now."""
        if chunk.error is not None:
            record.error = chunk.error
            return False
        for choice in chunk.choices:
            if choice.delta.content:
                record.ttft_s = record.ttft_s or time.perf_counter() - started
                record.deltas.append(choice.delta.content)
            if choice.finish_reason is not None:
                record.finish_reason = choice.finish_reason
        return record.leave_after is not None and len(record.deltas) >= record.leave_after


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The pieces of a chunked HTTP/1.1 body, as they arrive."""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        data = await reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
        if size == 0:
            return
        yield data[:-2]


def percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, round(fraction * 1000) - 1)]


def process_peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def process_fds(pid: int) -> tuple[int, int]:
    """Open file descriptors of a process, and its soft limit on them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()), int(line.split()[3])
    raise AssertionError(f"no open-files limit for process {pid}")


def drill_channels(words: int) -> str:
    """The drills' two mock channels: ``drill-mock``, slow (5 tokens/s), and ``fast-mock``; both reply ``words``."""
    reply = mock_reply(words)
    return f"""
[[channels]]
name = "drill"
type = "mock"
models = ["drill-mock"]
tokens_per_second = 5
max_concurrency = 1000
reply = "{reply}"

[[channels]]
name = "fast"
type = "mock"
models = ["fast-mock"]
reply = "{reply}"
"""
