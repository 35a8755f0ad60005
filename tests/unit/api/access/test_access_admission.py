"""Access control on fakeredis: key hashing and look-up, the rate-limit script with its token
reservations, usage accounts, and the checks as a handler sees them (401, 403, 429, what is billed)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import msgspec
import pytest
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.testing import AsyncTestClient

from api.access.admission import admit, charged
from api.access.keys import Access
from api.access.store import KeyStore, Verdict
from api.errors import exception_handlers
from shared.access_config import AccessConfig, AccessKeyConfig, KeyPolicy, key_digest
from shared.config import ConfigError, Settings, load_settings
from shared.errors import Conflict, RedisUnavailable
from shared.events import Usage
from shared.keys import AccessKeys
from shared.usage import Billing, UsageLedger

SECRET = "sk-test-configured-key"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


def _offline() -> fakeredis.FakeAsyncRedis:
    """A Redis that fails every call: proves a code path makes none."""
    server = fakeredis.FakeServer()
    server.connected = False
    return fakeredis.FakeAsyncRedis(server=server)


# --- hashing and configuration -------------------------------------------------------------------


def test_keys_are_hashed_with_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    assert key_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert AccessKeyConfig(name="a", key_sha256=DIGEST.upper()).digest() == DIGEST
    monkeypatch.setenv("E2E_UNIT_KEY", SECRET)
    assert AccessKeyConfig(name="b", key_env="E2E_UNIT_KEY").digest() == DIGEST
    monkeypatch.setenv("E2E_UNIT_KEY", "")
    assert AccessKeyConfig(name="b", key_env="E2E_UNIT_KEY").digest() is None


def test_access_config_defaults_to_open_and_validates_keys(tmp_path: Path) -> None:
    assert load_settings(environ={}).access.mode == "open"
    path = tmp_path / "aiapi.toml"
    path.write_text(f'[access]\nmode = "keys"\n[[access.keys]]\nname = "a"\nkey_sha256 = "{DIGEST}"\nrpm = 3\n')
    access = load_settings(path, environ={}).access
    assert access.mode == "keys" and access.keys[0].rpm == 3
    bad_entries = [
        'name = "a"',  # neither key_sha256 nor key_env
        f'name = "a"\nkey_env = "X"\nkey_sha256 = "{DIGEST}"',  # both
        'name = "a"\nkey_sha256 = "not-hex"',
        'name = "a/b"\nkey_env = "X"',
        'name = "a"\nkey_env = "X"\ntpm = -1',
        'name = "a"\nkey_env = "X"\nunknown = 1',
    ]
    for entry in bad_entries:
        path.write_text(f'[access]\nmode = "keys"\n[[access.keys]]\n{entry}\n')
        with pytest.raises(ConfigError):
            load_settings(path, environ={})
    path.write_text('[[access.keys]]\nname = "a"\nkey_env = "X"\n[[access.keys]]\nname = "a"\nkey_env = "Y"\n')
    with pytest.raises(ConfigError, match="duplicate access key names: a"):
        load_settings(path, environ={})


# --- the rate-limit script -----------------------------------------------------------------------


async def test_rpm_is_a_sliding_window_with_an_exact_wait(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store, key = KeyStore(fake_redis), KeyPolicy(name="k", rpm=2)
    assert await store.admit(key, 1_000) == (Verdict.ADMITTED, 0)
    assert await store.admit(key, 30_500) == (Verdict.ADMITTED, 0)
    # Full: the oldest request (second 1) leaves the window at 61 s.
    assert await store.admit(key, 45_000) == (Verdict.RPM, 16_000)
    assert await store.admit(key, 60_999) == (Verdict.RPM, 1)
    # Rejected requests were not counted: at 61 s one place is free, and only one.
    assert await store.admit(key, 61_000) == (Verdict.ADMITTED, 0)
    assert await store.admit(key, 61_100) == (Verdict.RPM, 28_900)
    buckets = await fake_redis.hgetall(AccessKeys("k").requests)
    assert buckets == {b"30": b"1", b"61": b"1"}, "buckets that left the window are deleted"
    assert 0 < await fake_redis.pttl(AccessKeys("k").requests) <= 61_000


async def test_a_bucket_leaves_the_window_and_its_total_at_the_windows_edge(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    store, key, keys = KeyStore(fake_redis), KeyPolicy(name="e", rpm=2), AccessKeys("e")
    assert await store.admit(key, 0) == (Verdict.ADMITTED, 0)
    assert await store.admit(key, 999) == (Verdict.ADMITTED, 0)
    # Second 0 is in the window up to its last millisecond at 59.999 s, and out of it at 60 s.
    assert await store.admit(key, 59_999) == (Verdict.RPM, 1)
    assert await fake_redis.hget(keys.requests_total, "sum") == b"2"
    assert await store.admit(key, 60_000) == (Verdict.ADMITTED, 0)
    assert await fake_redis.hgetall(keys.requests) == {b"60": b"1"}
    assert await fake_redis.hgetall(keys.requests_total) == {b"sum": b"1", b"from": b"1"}
    # A total lost (or expired before its buckets) is counted again from the buckets.
    await fake_redis.delete(keys.requests_total)
    assert await store.admit(key, 61_000) == (Verdict.ADMITTED, 0)
    assert await store.admit(key, 62_000) == (Verdict.RPM, 58_000)
    # After a pause longer than the window, nothing old counts.
    assert await store.admit(key, 200_000) == (Verdict.ADMITTED, 0)
    assert await fake_redis.hgetall(keys.requests) == {b"200": b"1"}
    assert await fake_redis.hget(keys.requests_total, "sum") == b"1"


async def test_a_settlement_for_a_bucket_the_window_passed_changes_nothing(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    store, ledger, keys = KeyStore(fake_redis), UsageLedger(fake_redis), AccessKeys("s")
    key = KeyPolicy(name="s", tpm=100)
    assert await store.admit(key, 1_000, reserve_tokens=50) == (Verdict.ADMITTED, 0)
    assert await store.admit(key, 61_500, reserve_tokens=10) == (Verdict.ADMITTED, 0)
    # The worker still saw second 1 in the window (its clock is behind); the API's window has passed it.
    await ledger.record(Billing("s", "m", 50, 1), Usage(70, 20), failed=False, estimated=False, now_s=60)
    assert await fake_redis.hgetall(keys.tokens) == {b"61": b"10"}
    assert await fake_redis.hget(keys.tokens_total, "sum") == b"10"
    assert await store.admit(key, 62_000, reserve_tokens=90) == (Verdict.ADMITTED, 0)
    assert await store.admit(key, 62_000, reserve_tokens=1) == (Verdict.TPM, 59_000)


async def test_tpm_and_budget_count_reported_tokens(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store, ledger = KeyStore(fake_redis), UsageLedger(fake_redis)
    key = KeyPolicy(name="t", tpm=100, budget_tokens=250)
    assert await store.admit(key, 10_000) == (Verdict.ADMITTED, 0)
    await ledger.record(Billing("t", "m", 0, 10), Usage(60, 30), failed=False, estimated=False, now_s=10)
    assert await store.admit(key, 11_000) == (Verdict.ADMITTED, 0), "90 tokens: still under 100"
    await ledger.record(Billing("t", "m", 0, 11), Usage(5, 20), failed=False, estimated=False, now_s=20)
    # 115 tokens in the window: the second-10 bucket (90) must leave before it is under 100, at 70 s.
    assert await store.admit(key, 21_000) == (Verdict.TPM, 49_000)
    assert await store.admit(key, 70_000) == (Verdict.ADMITTED, 0)
    await ledger.record(Billing("t", "m", 0, 70), Usage(100, 35), failed=False, estimated=False, now_s=75)
    assert await store.admit(key, 200_000) == (Verdict.BUDGET, 0), "250 tokens spent over the key's life"
    unlimited = KeyPolicy(name="t", rpm=5)
    assert await store.admit(unlimited, 200_000) == (Verdict.ADMITTED, 0)


async def test_a_prompt_is_reserved_on_admission_and_settled_by_its_record(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    store, ledger = KeyStore(fake_redis), UsageLedger(fake_redis)
    key = KeyPolicy(name="r", tpm=100, budget_tokens=1000)
    assert await store.admit(key, 5_000, reserve_tokens=70) == (Verdict.ADMITTED, 0)
    # A second 70-token prompt no longer fits beside the first, which is still running: no overshoot.
    assert await store.admit(key, 6_000, reserve_tokens=70) == (Verdict.TPM, 59_000)
    assert await store.admit(key, 6_000, reserve_tokens=30) == (Verdict.ADMITTED, 0)
    # The first ends having used 40 tokens in all: its bucket (second 5) is corrected to the real figure.
    await ledger.record(Billing("r", "m", 70, 5), Usage(30, 10), failed=False, estimated=False, now_s=9)
    assert await fake_redis.hgetall(AccessKeys("r").tokens) == {b"5": b"40", b"6": b"30"}
    assert int(await fake_redis.get(AccessKeys("r").spent)) == 40, "the budget counts real tokens only"
    # A reservation whose generation outlived the window is not corrected; the real figure counts now.
    await ledger.record(Billing("r", "m", 30, 6), Usage(20, 20), failed=False, estimated=False, now_s=70)
    assert (await fake_redis.hgetall(AccessKeys("r").tokens))[b"70"] == b"40"
    # A lone prompt bigger than the whole limit is admitted into an empty window, or it never could be.
    assert await store.admit(KeyPolicy(name="big", tpm=10), 1_000, reserve_tokens=500) == (Verdict.ADMITTED, 0)
    # The budget must hold the prompt's estimate.
    assert await store.admit(KeyPolicy(name="b", budget_tokens=50), 1_000, reserve_tokens=60) == (Verdict.BUDGET, 0)


# --- key look-up ---------------------------------------------------------------------------------


async def test_configured_keys_are_found_without_redis() -> None:
    redis = _offline()
    config = AccessConfig(
        mode="keys",
        keys=[
            AccessKeyConfig(name="on", key_sha256=DIGEST, models=["m"]),
            AccessKeyConfig(name="off", key_sha256=key_digest("disabled"), enabled=False),
        ],
    )
    access = Access(config, redis)
    key = await access.key(SECRET)
    assert key is not None and key.name == "on" and key.models == ["m"]
    # A disabled config key is refused without a Redis call too; an unknown one needs Redis.
    assert await access.key("disabled") is None
    with pytest.raises(RedisUnavailable):
        await access.key("unknown")
    await redis.aclose()


async def test_stored_keys_are_cached_until_forgotten(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    access = Access(AccessConfig(mode="keys", cache_s=3600), fake_redis)
    assert await access.key("sk-not-yet") is None
    secret, record = await access.store.create(KeyPolicy(name="runtime", rpm=7))
    assert record.created > 0 and secret.startswith("sk-aiapi-")
    assert await fake_redis.hget(AccessKeys.records, key_digest(secret)) is not None
    assert secret.encode() not in b"".join(await fake_redis.hvals(AccessKeys.records)), "only the digest is stored"
    found = await access.key(secret)
    assert found is not None and found.rpm == 7
    assert await access.store.delete("runtime")
    assert await access.key(secret) is not None, "another process's deletion is seen only after cache_s"
    access.forget()
    assert await access.key(secret) is None
    uncached = Access(AccessConfig(mode="keys", cache_s=0), fake_redis)
    secret, _ = await uncached.store.create(KeyPolicy(name="later", enabled=False))
    assert await uncached.key(secret) is None, "a disabled key does not authenticate"
    stored = await uncached.store.find("later")
    assert stored is not None
    await uncached.store.replace(msgspec.structs.replace(stored, enabled=True))
    assert await uncached.key(secret) is not None


async def test_store_names_are_unique_and_a_deleted_key_is_not_revived(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = KeyStore(fake_redis)
    _, record = await store.create(KeyPolicy(name="dup"))
    with pytest.raises(Conflict):
        await store.create(KeyPolicy(name="dup"))
    await UsageLedger(fake_redis).record(Billing("dup", "m"), Usage(0, 0), failed=True, estimated=False, now_s=1)
    assert await store.delete("dup")
    assert await fake_redis.exists(AccessKeys("dup").usage) == 0, "its usage goes with it"
    assert not await store.replace(record), "changing a deleted key must not store its digest again"
    assert await fake_redis.hlen(AccessKeys.records) == 0
    assert not await store.delete("dup")
    assert await store.stored() == []


# --- usage accounting ----------------------------------------------------------------------------


async def test_usage_is_recorded_per_model_with_totals(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store, ledger = KeyStore(fake_redis), UsageLedger(fake_redis)
    await ledger.record(Billing("u", "model-a", 0, 1000), Usage(10, 20, 4), failed=False, estimated=False, now_s=1000)
    await ledger.record(Billing("u", "model-a", 0, 1001), Usage(1, 2), failed=True, estimated=True, now_s=1001)
    await ledger.record(Billing("u", "team:model-b", 0, 1002), Usage(0, 0), failed=True, estimated=False, now_s=1002)
    usage = await store.usage("u", now_s=1030)
    by_model = {m.model: m for m in usage.models}
    assert [m.model for m in usage.models] == ["model-a", "team:model-b"]
    a, b = by_model["model-a"], by_model["team:model-b"]
    assert (a.requests, a.errors, a.input_tokens, a.output_tokens, a.cached_tokens) == (2, 1, 11, 22, 4)
    assert (a.estimated, b.estimated, usage.total.estimated) == (1, 0, 1)
    assert (b.requests, b.errors, b.input_tokens, b.output_tokens) == (1, 1, 0, 0)
    assert (usage.total.requests, usage.total.errors, usage.total.input_tokens) == (3, 2, 11)
    assert usage.spent_tokens == 33 and usage.tokens_last_minute == 33
    assert (await store.usage("u", now_s=1062)).tokens_last_minute == 0, "the window slid past them"


async def test_a_lost_usage_record_does_not_raise() -> None:
    redis = _offline()
    await UsageLedger(redis).record(Billing("u", "m"), Usage(1, 1), failed=False, estimated=False, now_s=1)
    await redis.aclose()


# --- the checks, as handlers see them ------------------------------------------------------------


@post("/v1/generate", status_code=200)
async def generate(request: Request[Any, Any, Any]) -> Billing | None:
    """Admit and charge a request as the generation routes do; answer with what would be billed."""
    admission = await admit(request)
    return await admission.charge() if admission else None


@post("/v1/refused", status_code=200)
async def refused(request: Request[Any, Any, Any]) -> None:
    """Charge a request, then refuse it before it is queued, as the session gate's 409 does."""
    async with charged(await admit(request)):
        raise Conflict("busy", code="concurrent_request")


def _app(redis: fakeredis.FakeAsyncRedis, access: AccessConfig) -> Litestar:
    gateway = SimpleNamespace(settings=Settings(access=access), redis=redis, access=Access(access, redis))
    handlers = [generate, refused]
    return Litestar(handlers, exception_handlers=exception_handlers, state=State({"gateway": gateway}))


KEYS = AccessConfig(
    mode="keys",
    keys=[
        AccessKeyConfig(name="main", key_sha256=DIGEST, models=["mock-1"], rpm=2),
        AccessKeyConfig(name="free", key_sha256=key_digest("sk-free")),
    ],
)


async def test_keys_mode_answers_401_403_and_429(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    async with AsyncTestClient(_app(fake_redis, KEYS)) as client:
        missing = await client.post("/v1/generate", json={"model": "mock-1"})
        wrong = await client.post("/v1/generate", json={"model": "mock-1"}, headers={"authorization": "Bearer nope"})
        for reply in (missing, wrong):
            assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
        auth = {"authorization": f"Bearer {SECRET}"}
        other = await client.post("/v1/generate", json={"model": "mock-2"}, headers=auth)
        assert other.status_code == 403 and other.json()["error"]["code"] == "model_not_allowed"
        for _ in range(2):
            assert (await client.post("/v1/generate", json={"model": "mock-1"}, headers=auth)).status_code == 200
        limited = await client.post("/v1/generate", json={"model": "mock-1"}, headers=auth)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert 55 <= int(limited.headers["retry-after"]) <= 60
        free = {"authorization": "Bearer sk-free"}
        assert (await client.post("/v1/generate", json={"model": "any"}, headers=free)).status_code == 200


async def test_a_charged_request_carries_its_billing_and_reservation(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    keys = AccessConfig(mode="keys", keys=[AccessKeyConfig(name="tok", key_sha256=DIGEST, tpm=1000)])
    async with AsyncTestClient(_app(fake_redis, keys)) as client:
        body = msgspec.json.encode({"model": "mock-1", "messages": [{"role": "user", "content": "x" * 400}]})
        reply = await client.post("/v1/generate", content=body, headers={"authorization": f"Bearer {SECRET}"})
    billing = msgspec.json.decode(reply.content, type=Billing)
    assert (billing.key, billing.model) == ("tok", "mock-1")
    assert billing.reserved_tokens == -(-len(body) // 4) and billing.reserved_at > 0, "a quarter of the body's bytes"


async def test_a_request_refused_after_its_charge_gives_the_reservation_back() -> None:
    server = fakeredis.FakeServer()
    seen = fakeredis.FakeRedis(server=server)
    keys = AccessConfig(mode="keys", keys=[AccessKeyConfig(name="tok", key_sha256=DIGEST, tpm=1000, rpm=100)])
    auth = {"authorization": f"Bearer {SECRET}"}
    body = msgspec.json.encode({"model": "mock-1", "messages": [{"role": "user", "content": "x" * 400}]})
    async with AsyncTestClient(_app(fakeredis.FakeAsyncRedis(server=server), keys)) as client:
        for _ in range(3):
            reply = await client.post("/v1/refused", content=body, headers=auth)
            assert reply.status_code == 409
        assert set(seen.hgetall(AccessKeys("tok").tokens).values()) <= {b"0"}
        assert (await client.post("/v1/generate", content=body, headers=auth)).status_code == 200
    assert sum(map(int, seen.hgetall(AccessKeys("tok").tokens).values())) == -(-len(body) // 4)
    assert sum(map(int, seen.hgetall(AccessKeys("tok").requests).values())) == 4, "the 409s are requests made"


async def test_open_mode_checks_nothing_and_calls_no_redis() -> None:
    redis = _offline()
    async with AsyncTestClient(_app(redis, AccessConfig())) as client:
        reply = await client.post("/v1/generate", json={"model": "anything"})
        assert reply.status_code == 200 and reply.content == b"null"
    await redis.aclose()
