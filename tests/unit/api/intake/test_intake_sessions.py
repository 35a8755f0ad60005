"""Session resolution and the execution gate on fakeredis."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock, MagicMock

import fakeredis
import pytest

from api.intake.sessions import Sessions, concurrency_policy
from shared.config import SessionsConfig, Settings
from shared.errors import Conflict, InvalidRequest
from shared.generation import GenerationRequest, Message, TextPart
from shared.keys import SessionKeys, binding_key
from shared.scripts import Scripts
from shared.sessions import encode_zero_width, turn_fingerprint

USER = Message("user", [TextPart("hi")])
REPLY = Message("assistant", [TextPart("hello")])
NEXT = Message("user", [TextPart("more")])


def _sessions(redis: fakeredis.FakeAsyncRedis, **config: Any) -> tuple[Sessions, AsyncMock]:
    dispatcher = MagicMock()
    dispatcher.cancel = AsyncMock()
    settings = Settings(sessions=SessionsConfig(**config))
    return Sessions(redis, Scripts(redis), settings, dispatcher), dispatcher.cancel


def _http(policy: str | None = None) -> Any:
    return concurrency_policy({"x-aiapi-concurrency": policy} if policy else {})


def _generation(generation_id: str, messages: list[Message]) -> GenerationRequest:
    return GenerationRequest(generation_id, "req", "m", messages, "reply", 0)


async def test_a_new_conversation_gets_an_ungated_fresh_session(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    sessions, _ = _sessions(fake_redis)
    first = await sessions.enter(_generation("g1", [USER]), policy=_http(), owner="o", queue_timeout_s=5)
    second = await sessions.enter(_generation("g2", [USER]), policy=_http(), owner="o", queue_timeout_s=5)
    assert first.session is not None and second.session is not None
    assert first.session.fence == 0 and first.session.id != second.session.id


async def test_a_bound_reply_leads_back_to_its_session_and_the_gate_rejects(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    sessions, _ = _sessions(fake_redis)
    await fake_redis.set(binding_key("o", turn_fingerprint(USER, REPLY)), "sess_known")
    admitted = await sessions.enter(
        _generation("g1", [USER, REPLY, NEXT]), policy=_http(), owner="o", queue_timeout_s=5
    )
    assert admitted.session is not None
    assert (admitted.session.id, admitted.session.fence) == ("sess_known", 1)
    assert await fake_redis.get(SessionKeys("o", "sess_known").gate) == b"g1"
    with pytest.raises(Conflict) as caught:
        await sessions.enter(_generation("g2", [USER, REPLY, NEXT]), policy=_http(), owner="o", queue_timeout_s=5)
    assert caught.value.code == "concurrent_request" and caught.value.status == 409
    other_owner = await sessions.enter(
        _generation("g3", [USER, REPLY, NEXT]), policy=_http(), owner="x", queue_timeout_s=5
    )
    assert other_owner.session is not None and other_owner.session.id != "sess_known"


async def test_cancel_previous_takes_over_with_a_higher_fence(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    sessions, cancel = _sessions(fake_redis)
    history = [USER, REPLY, NEXT]
    first = await sessions.enter(_generation("g1", history), policy=_http(), owner="o", queue_timeout_s=5)
    second = await sessions.enter(
        _generation("g2", history), policy=_http("cancel_previous"), owner="o", queue_timeout_s=5
    )
    assert first.session is not None and second.session is not None
    assert second.session.id == first.session.id and second.session.fence > first.session.fence
    cancel.assert_awaited_once_with("g1")
    await sessions.leave(first)  # the displaced run cannot release the new holder's gate
    assert await fake_redis.get(SessionKeys("o", second.session.id).gate) == b"g2"
    await sessions.leave(second)
    assert await fake_redis.get(SessionKeys("o", second.session.id).gate) is None


async def test_allow_runs_both_ungated(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    sessions, _ = _sessions(fake_redis, concurrency="allow")
    for generation_id in ("g1", "g2"):
        admitted = await sessions.enter(
            _generation(generation_id, [USER, REPLY]), policy=_http(), owner="o", queue_timeout_s=5
        )
        assert admitted.session is not None and admitted.session.fence == 0


async def test_an_unknown_policy_header_is_a_400(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    sessions, _ = _sessions(fake_redis)
    with pytest.raises(InvalidRequest):
        await sessions.enter(_generation("g1", [USER]), policy=_http("whatever"), owner="o", queue_timeout_s=5)


async def test_zero_width_mode_reads_the_id_and_strips_every_marker(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    sessions, _ = _sessions(fake_redis, mode="zero_width")
    marked = Message("assistant", [TextPart("hello" + encode_zero_width("sess_zw"))])
    admitted = await sessions.enter(
        _generation("g1", [USER, marked, NEXT]), policy=_http(), owner="o", queue_timeout_s=5
    )
    assert admitted.session is not None
    assert (admitted.session.id, admitted.session.zero_width) == ("sess_zw", True)
    assert admitted.messages[1].text() == "hello"


async def test_a_marker_presented_by_another_owner_never_touches_the_owners_gate(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    sessions, cancel = _sessions(fake_redis, mode="zero_width")
    marked = Message("assistant", [TextPart("hello" + encode_zero_width("sess_zw"))])
    history = [USER, marked, NEXT]
    await sessions.enter(_generation("g1", history), policy=_http(), owner="a", queue_timeout_s=5)
    other = await sessions.enter(
        _generation("g2", history), policy=_http("cancel_previous"), owner="b", queue_timeout_s=5
    )
    assert other.session is not None and other.session.fence == 1
    cancel.assert_not_awaited()
    assert await fake_redis.get(SessionKeys("a", "sess_zw").gate) == b"g1"
    assert await fake_redis.get(SessionKeys("b", "sess_zw").gate) == b"g2"


async def test_an_inherited_session_wins(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    sessions, _ = _sessions(fake_redis)
    admitted = await sessions.enter(
        _generation("g1", [NEXT]), policy=_http(), owner="o", queue_timeout_s=5, inherited="sess_chain"
    )
    assert admitted.session is not None and admitted.session.id == "sess_chain" and admitted.session.fence == 1


async def test_leaving_while_redis_is_away_leaves_the_gate_to_expire() -> None:
    """The caller is reporting an error, often Redis being away: that error must reach the client."""
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    sessions, _ = _sessions(redis)
    admitted = await sessions.enter(
        _generation("g1", [USER, REPLY, NEXT]), policy=_http(), owner="o", queue_timeout_s=5
    )
    assert admitted.session is not None and admitted.session.fence == 1
    server.connected = False
    await sessions.leave(admitted)
    server.connected = True
    assert (
        0 < await redis.pttl(SessionKeys("o", admitted.session.id).gate) <= (5 + Settings().worker.lease_ttl_s) * 1000
    )
    await redis.aclose()
