"""The rate-limit script's running totals on a real Redis, against a model of the windows that sums
every bucket on each admission (what the script did before it kept totals): random admissions,
settlements and releases, with pauses shorter and longer than the window, get the same verdicts and
waits, and the totals always equal the buckets still in the window."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from api.access.store import KeyStore, Verdict
from shared.access_config import KeyPolicy
from shared.events import Usage
from shared.keys import AccessKeys
from shared.usage import WINDOW_S, Billing, UsageLedger

pytestmark = pytest.mark.integration


_GAPS_MS = (0, 7, 250, 999, 1_000, 3_000, 20_000, 59_000, 60_000, 61_000, 130_000)
"""Time between two steps: mostly within a window, sometimes to its edge or past it."""
_GAP_WEIGHTS = (6, 6, 6, 4, 4, 3, 2, 1, 1, 1, 1)


class _Windows:
    """Both windows as plain buckets, summed (and their old buckets dropped) on every admission."""

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.tokens: dict[int, int] = {}

    @staticmethod
    def _live(buckets: dict[int, int], second: int) -> list[tuple[int, int]]:
        for at in [at for at in buckets if at <= second - WINDOW_S]:
            del buckets[at]
        return sorted(buckets.items())

    @staticmethod
    def _wait(live: list[tuple[int, int]], total: int, allowed: int, now_ms: int) -> int:
        for at, amount in live:
            total -= amount
            if total <= allowed:
                return (at + WINDOW_S) * 1000 - now_ms
        return 60_000

    def admit(self, key: KeyPolicy, now_ms: int, reserve: int) -> tuple[Verdict, int]:
        second = now_ms // 1000
        tokens = self._live(self.tokens, second)
        total = sum(amount for _, amount in tokens)
        if key.tpm and (total >= key.tpm or (total > 0 and total + reserve > key.tpm)):
            allowed = max(0, key.tpm - reserve) if reserve > 0 else key.tpm - 1
            return Verdict.TPM, self._wait(tokens, total, allowed, now_ms)
        requests = self._live(self.requests, second)
        count = sum(amount for _, amount in requests)
        if key.rpm and count >= key.rpm:
            return Verdict.RPM, self._wait(requests, count, key.rpm - 1, now_ms)
        if key.rpm:
            self.requests[second] = self.requests.get(second, 0) + 1
        if reserve:
            self.tokens[second] = self.tokens.get(second, 0) + reserve
        return Verdict.ADMITTED, 0

    def settle(self, billing: Billing, tokens: int, now_s: int) -> None:
        if now_s - billing.reserved_at < WINDOW_S:
            bucket, change = billing.reserved_at, tokens - billing.reserved_tokens
        else:
            bucket, change = now_s, tokens
        self.tokens[bucket] = self.tokens.get(bucket, 0) + change

    def release(self, billing: Billing, now_s: int) -> None:
        if billing.reserved_tokens and now_s - billing.reserved_at < WINDOW_S:
            self.tokens[billing.reserved_at] = self.tokens.get(billing.reserved_at, 0) - billing.reserved_tokens


async def _assert_totals_match(redis: Redis, name: str) -> None:
    keys = AccessKeys(name)
    for buckets_key, totals_key in ((keys.requests, keys.requests_total), (keys.tokens, keys.tokens_total)):
        totals = await redis.hgetall(totals_key)  # type: ignore[misc]
        if not totals:
            continue
        buckets = await redis.hgetall(buckets_key)  # type: ignore[misc]
        # The total is of the window as the last admission saw it: from its oldest second on.
        counted = sum(int(amount) for at, amount in buckets.items() if int(at) >= int(totals[b"from"]))
        assert int(totals[b"sum"]) == counted
        if buckets:
            expiry = [await redis.execute_command("PEXPIRETIME", k) for k in (totals_key, buckets_key)]
            assert 0 < expiry[0] <= expiry[1], "a total never outlives its buckets"


@pytest.mark.parametrize(("seed", "rpm", "tpm"), [(0, 5, 0), (1, 0, 300), (2, 5, 300), (3, 20, 2_000), (4, 0, 0)])
async def test_running_totals_decide_as_summing_every_bucket_does(redis: Redis, seed: int, rpm: int, tpm: int) -> None:
    rng = random.Random(seed)
    name = f"model-{seed}"
    key = KeyPolicy(name=name, rpm=rpm, tpm=tpm)
    store, ledger, model = KeyStore(redis), UsageLedger(redis), _Windows()
    running: list[Billing] = []
    now_ms = 1_700_000_000_000
    for _ in range(400):
        now_ms += rng.choices(_GAPS_MS, _GAP_WEIGHTS)[0]
        now_s = now_ms // 1000
        action = rng.random()
        if action < 0.6:
            reserve = rng.choice([0, 10, 100, 400])
            verdict = await store.admit(key, now_ms, reserve_tokens=reserve)
            assert verdict == model.admit(key, now_ms, reserve)
            if verdict[0] is Verdict.ADMITTED:
                running.append(Billing(name, "m", reserve, now_s))
        elif running and action < 0.9:
            billing = running.pop(rng.randrange(len(running)))
            used = Usage(rng.randrange(200), rng.randrange(200))
            await ledger.record(billing, used, failed=False, estimated=False, now_s=now_s)
            model.settle(billing, used.input_tokens + used.output_tokens, now_s)
        elif running:
            billing = running.pop()
            await ledger.release(billing, now_s=now_s)
            model.release(billing, now_s)
        await _assert_totals_match(redis, name)
