"""Console sessions, one-time login links and the brake on wrong admin keys."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from api.console.auth import FAILURE_WINDOW_S, MAX_FAILURES, ConsoleAuth, TooManyAttempts
from shared.keys import ConsoleKeys


async def test_a_session_lives_until_closed_and_redis_holds_no_cookie(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    token = await auth.open_session()
    session = await auth.session(token)
    assert session is not None and len(session.csrf) >= 24
    stored = [key async for key in fake_redis.scan_iter()]
    assert stored and all(token.encode() not in key for key in stored)
    assert await fake_redis.ttl(stored[0]) > 0
    assert await auth.session("someone-else") is None
    assert await auth.session("") is None
    await auth.close_session(token)
    assert await auth.session(token) is None


async def test_sessions_have_their_own_csrf_tokens(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    first, second = await auth.session(await auth.open_session()), await auth.session(await auth.open_session())
    assert first is not None and second is not None and first.csrf != second.csrf


async def test_a_login_link_works_once(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    link = await auth.issue_link()
    assert await auth.redeem_link(link)
    assert not await auth.redeem_link(link)
    assert not await auth.redeem_link("made-up")


async def test_wrong_keys_lock_the_client_out_for_the_window(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    for _ in range(MAX_FAILURES):
        assert not await auth.check_key("guess", "right", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        await auth.check_key("right", "right", "10.0.0.1")
    assert 0 < refused.value.retry_after <= FAILURE_WINDOW_S
    assert await auth.check_key("right", "right", "10.0.0.2")
    await fake_redis.delete(ConsoleKeys.failures("10.0.0.1"))
    assert await auth.check_key("right", "right", "10.0.0.1")


async def test_the_failure_window_is_not_extended_by_more_failures(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    await auth.check_key("guess", "right", "10.0.0.3")
    await fake_redis.expire(ConsoleKeys.failures("10.0.0.3"), 5)
    await auth.check_key("guess", "right", "10.0.0.3")
    assert await fake_redis.ttl(ConsoleKeys.failures("10.0.0.3")) <= 5


async def test_parallel_guesses_cannot_slip_past_the_limit(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    answers = await asyncio.gather(
        *(auth.check_key("guess", "right", "10.0.0.4") for _ in range(3 * MAX_FAILURES)), return_exceptions=True
    )
    assert answers.count(False) == MAX_FAILURES
    assert all(isinstance(answer, TooManyAttempts) for answer in answers if answer is not False)


async def test_right_keys_use_up_nothing(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    auth = ConsoleAuth(fake_redis)
    for _ in range(3 * MAX_FAILURES):
        assert await auth.check_key("right", "right", "10.0.0.5")
    assert not await auth.check_key("guess", "right", "10.0.0.5")
