"""Stored responses on fakeredis: ownership, projection from the log, and runs that cannot finish."""

from __future__ import annotations

import time

import fakeredis
import pytest

from api.responses.objects import ResponseShell
from api.responses.store import ResponseStore, StoredResponse
from shared.config import RelayConfig, ResponsesConfig, Settings
from shared.errors import NotFound
from shared.events import Envelope, Finished, GenerationEvent, Started, TextDelta, encode_envelope
from shared.keys import ResponseKeys


def _store(redis: fakeredis.FakeAsyncRedis) -> ResponseStore:
    settings = Settings(
        relay=RelayConfig(queue_timeout_s=5), responses=ResponsesConfig(store_ttl_s=60, background_queue_timeout_s=30)
    )
    return ResponseStore(redis, settings)


def _record(response_id: str = "resp_1", *, created_at: int | None = None, background: bool = False) -> StoredResponse:
    created = int(time.time()) if created_at is None else created_at
    shell = ResponseShell(id=response_id, created_at=created, model="m", background=background)
    return StoredResponse(shell=shell, owner="alice", conversation=[], input_items=[])


async def _log(redis: fakeredis.FakeAsyncRedis, response_id: str, events: list[GenerationEvent]) -> None:
    for seq, event in enumerate(events):
        data = encode_envelope(Envelope(response_id, seq, event))
        await redis.xadd(ResponseKeys(response_id).events, {"e": data}, id=f"0-{seq + 1}")


async def test_records_round_trip_with_a_ttl_and_are_scoped_to_their_owner(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    store = _store(fake_redis)
    await store.create(_record())
    assert (await store.load("resp_1", "alice")).shell.id == "resp_1"
    assert 0 < await fake_redis.ttl(ResponseKeys("resp_1").record) <= 60
    with pytest.raises(NotFound):
        await store.load("resp_1", "mallory")
    with pytest.raises(NotFound):
        await store.load("resp_2", "alice")


async def test_a_finished_log_projects_to_the_completed_response(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = _store(fake_redis)
    record = _record()
    await _log(fake_redis, "resp_1", [Started("w"), TextDelta("hi"), Finished("stop", 9)])
    projector, events = await store.project(record)
    assert projector.snapshot().status == "completed" and projector.completed_at == 9
    assert [event.sequence_number for event in events] == list(range(len(events)))


async def test_a_running_response_with_a_live_worker_is_in_progress(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = _store(fake_redis)
    await _log(fake_redis, "resp_1", [Started("w"), TextDelta("par")])
    await fake_redis.set(ResponseKeys("resp_1").lease, "token", px=5000)
    projector, _ = await store.project(_record())
    snapshot = projector.snapshot()
    assert snapshot.status == "in_progress" and snapshot.usage is None
    assert snapshot.output[0].status == "in_progress"


async def test_a_run_whose_worker_vanished_is_failed(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = _store(fake_redis)
    await _log(fake_redis, "resp_1", [Started("w"), TextDelta("par")])
    projector, events = await store.project(_record())
    assert projector.status == "failed" and projector.error is not None
    assert events[-1].sequence_number == len(events) - 1


async def test_a_response_cancelled_before_it_started_is_cancelled(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = _store(fake_redis)
    await fake_redis.set(ResponseKeys("resp_1").cancel, b"1")
    projector, _ = await store.project(_record(background=True))
    assert projector.snapshot().status == "cancelled"


async def test_queued_responses_fail_once_no_worker_took_them_in_time(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = _store(fake_redis)
    fresh, _ = await store.project(_record(background=True))
    assert fresh.snapshot().status == "queued"
    stale, _ = await store.project(_record(background=True, created_at=int(time.time()) - 31))
    assert stale.snapshot().status == "failed"
    short, _ = await store.project(_record(created_at=int(time.time()) - 6))
    assert short.snapshot().status == "failed"


async def test_delete_removes_record_and_log(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    store = _store(fake_redis)
    await store.create(_record())
    await _log(fake_redis, "resp_1", [Started("w")])
    await store.delete("resp_1")
    keys = ResponseKeys("resp_1")
    assert not await fake_redis.exists(keys.record, keys.events)
