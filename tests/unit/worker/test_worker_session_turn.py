"""A run's part in its session: the gate held and released, the reply bound or marked."""

from __future__ import annotations

import fakeredis

from shared.config import MockChannel, Settings, WorkerConfig
from shared.events import TextDelta, decode_envelope
from shared.generation import GenerationRequest, Message, SessionRef, TextPart
from shared.keys import GenerationKeys, SessionKeys, binding_key
from shared.scripts import Scripts
from shared.sessions import decode_zero_width, turn_fingerprint
from tests.runners import build_runner
from worker.runner import GenerationRunner
from worker.session_turn import SessionTurn

ASK = Message("user", [TextPart("hello there")])


def _runner(redis: fakeredis.FakeAsyncRedis) -> GenerationRunner:
    channel = MockChannel(name="mock", models=["mock-1"], reply="fine thanks")
    settings = Settings(channels=[channel], worker=WorkerConfig(lease_ttl_s=3))
    return build_runner(redis, settings)


def _request(session: SessionRef) -> GenerationRequest:
    return GenerationRequest("g1", "req", "mock-1", [ASK], "relay", 1, session=session)


async def test_a_finished_turn_binds_its_reply_and_frees_the_gate(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await fake_redis.set(SessionKeys("owner", "sess_1").gate, "g1")
    await _runner(fake_redis).run(_request(SessionRef("sess_1", 3, "owner")))
    reply = Message("assistant", [TextPart("fine thanks")])
    assert await fake_redis.get(binding_key("owner", turn_fingerprint(ASK, reply))) == b"sess_1"
    assert await fake_redis.get(SessionKeys("owner", "sess_1").gate) is None


async def test_a_run_does_not_free_a_gate_taken_over_by_another(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await fake_redis.set(SessionKeys("owner", "sess_1").gate, "g2")
    await _runner(fake_redis).run(_request(SessionRef("sess_1", 3, "owner")))
    assert await fake_redis.get(SessionKeys("owner", "sess_1").gate) == b"g2"
    reply = Message("assistant", [TextPart("fine thanks")])
    assert await fake_redis.get(binding_key("owner", turn_fingerprint(ASK, reply))) is None, "nor bind its reply"


async def test_a_turn_taken_over_after_its_reply_does_not_bind_it(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    request = _request(SessionRef("sess_1", 3, "owner"))
    turn = SessionTurn(Scripts(fake_redis), request, request.session, ttl_s=60)  # type: ignore[arg-type]
    turn.observe(TextDelta("fine thanks"))
    await fake_redis.set(SessionKeys("owner", "sess_1").gate, "g2")
    await turn.bind()
    assert await fake_redis.keys("aiapi:reply:*") == []
    await fake_redis.set(SessionKeys("owner", "sess_1").gate, "g1")
    await turn.bind()
    assert len(await fake_redis.keys("aiapi:reply:*")) == 1


async def test_a_cancelled_run_that_never_started_still_frees_the_gate(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await fake_redis.set(SessionKeys("owner", "sess_1").gate, "g1")
    await fake_redis.set(GenerationKeys("g1").cancel, b"1")
    await _runner(fake_redis).run(_request(SessionRef("sess_1", 3, "owner")))
    assert await fake_redis.get(SessionKeys("owner", "sess_1").gate) is None


async def test_zero_width_mode_ends_the_reply_with_the_session_id(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    await _runner(fake_redis).run(_request(SessionRef("sess_zw", 0, "owner", zero_width=True)))
    events = [decode_envelope(f[b"e"]).event for _, f in await fake_redis.xrange(GenerationKeys("g1").events)]
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert text.startswith("fine thanks") and decode_zero_width(text) == "sess_zw"
