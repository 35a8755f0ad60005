"""How fast the console's pages answer with a large request log.

    python -m tests.bench.console_pages [--rows 100000] [--rounds 20]

Seeds a SQLite ledger with ``--rows`` generations spread over the last 24 hours (several keys, models
and channels, some failures), starts the gateway (one API, one worker) with the console on, logs in,
and times each page and the overview's data over ``--rounds`` requests after a warm-up: median, p95
and the slowest, in milliseconds. The overview answers from its last figures and refreshes them in the
background, so their computation is timed on its own too: cold, and a refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from api.console.figures import OverviewFigures
from shared.ledger.database import create_engine, database_url
from shared.ledger.migrate import migrate
from shared.ledger.record import LedgerRecord
from shared.ledger.writer import write_records
from shared.ledger_config import DatabaseConfig
from shared.redis_server import EmbeddedRedis
from tests.harness import GatewayProcesses

ADMIN_KEY = "bench-console-admin-key"
PAGES = (
    "/console/overview",
    "/console/api/overview",
    "/console/requests",
    "/console/requests?model=model-2&outcome=failed",
    "/console/requests/{id}",
    "/console/keys",
    "/console/keys/key-3",
    "/console/channels",
    "/console/sessions",
    "/console/playground",
)
_BATCH = 5000


def _records(count: int, now_ms: int) -> list[LedgerRecord]:
    pick = random.Random(7)
    return [
        LedgerRecord(
            id=f"bench{index:08d}",
            request_id=f"req_bench{index}",
            at_ms=now_ms - pick.randrange(86_400_000),
            key=f"key-{pick.randrange(20)}",
            model=f"model-{pick.randrange(5)}",
            channel=f"channel-{pick.randrange(4)}",
            account="default",
            client="openai-python",
            outcome="failed" if pick.random() < 0.03 else "completed",
            status=200,
            input_tokens=pick.randrange(50, 5000),
            output_tokens=pick.randrange(10, 1000),
            cost_usd=pick.random() / 100,
            ttft_ms=pick.uniform(5, 800),
            total_ms=pick.uniform(800, 5000),
            attempts=1,
        )
        for index in range(count)
    ]


async def _seed(path: Path, rows: int) -> str:
    engine = create_engine(database_url(DatabaseConfig(url=f"sqlite:///{path}"), str(path.parent)))
    try:
        await migrate(engine)
        records = _records(rows, int(time.time() * 1000))
        for start in range(0, rows, _BATCH):
            await write_records(engine, records[start : start + _BATCH])
        return records[rows // 2].id
    finally:
        await engine.dispose()


async def _time_figures(path: Path) -> None:
    """The overview's computation itself, which the page's answers do not wait for once it has run."""
    engine = create_engine(database_url(DatabaseConfig(url=f"sqlite:///{path}"), str(path.parent)))
    try:
        figures = OverviewFigures(engine, settle_ms=960_000)
        started = time.perf_counter()
        await figures.compute(int(time.time() * 1000))
        print(f"overview figures, first computation (24 hours rolled up): {_ms(started):.1f} ms")
        refreshes = []
        for _ in range(10):
            started = time.perf_counter()
            await figures.compute(int(time.time() * 1000))
            refreshes.append(_ms(started))
        print(f"overview figures, a refresh (the hours not yet final): p50 {statistics.median(refreshes):.1f} ms")
    finally:
        await engine.dispose()


def _login(client: httpx.Client) -> None:
    token = re.search(r'name="login_token" value="([^"]+)"', client.get("/console/login").text)
    assert token
    client.post("/console/login", data={"key": ADMIN_KEY, "login_token": token.group(1)})


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _time(client: httpx.Client, path: str, rounds: int) -> list[float]:
    client.get(path)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiapi-console-bench-") as folder:
        database = Path(folder) / "ledger.db"
        started = time.perf_counter()
        some_id = asyncio.run(_seed(database, args.rows))
        print(f"seeded {args.rows} rows in {time.perf_counter() - started:.1f} s")
        asyncio.run(_time_figures(database))
        embedded = None if os.environ.get("REDIS_URL") else EmbeddedRedis(data_dir=Path(folder), persist=False)
        redis_url = os.environ.get("REDIS_URL") or embedded.start()  # type: ignore[union-attr]
        config = f'[[access.keys]]\nname = "key-3"\nkey_sha256 = "{"0" * 64}"\n'
        env = {"AIAPI_ADMIN_KEY": ADMIN_KEY, "DATABASE_URL": f"sqlite:///{database}"}
        try:
            with (
                GatewayProcesses(redis_url=redis_url, config_toml=config, env=env) as gateway,
                httpx.Client(base_url=gateway.base_url.removesuffix("/v1"), timeout=30) as client,
            ):
                _login(client)
                print(f"{'page':<52} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
                for page in PAGES:
                    path = page.format(id=some_id)
                    timings = sorted(_time(client, path, args.rounds))
                    p95 = timings[max(0, round(0.95 * len(timings)) - 1)]
                    print(f"{path:<52} {statistics.median(timings):8.1f} {p95:8.1f} {timings[-1]:8.1f}")
        finally:
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    main()
