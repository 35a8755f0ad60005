"""The router: candidate order, failover before output, cooldowns, concurrency limits and error texts."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncGenerator, Sequence

import fakeredis
import pytest

from shared.config import AccountConfig, ChannelConfig, OpenAIChannel, RoutingConfig
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from shared.events import Finished, TextDelta, Usage
from shared.generation import GenerationRequest, Message, TextPart
from shared.keys import COOLDOWN_TOPIC, ChannelKeys
from shared.scripts import Scripts
from tests.pubsub import next_message
from worker.cooldowns import Cooldowns
from worker.failover import Router
from worker.provider_pool import ProviderPool
from worker.providers import ProviderOutput, UpstreamCall
from worker.registry import ProviderRegistry

Script = Sequence[ProviderOutput | GatewayError]


class _Scripted:
    """Plays its script; records every call it got."""

    def __init__(self, script: Script) -> None:
        self.script = list(script)
        self.calls: list[UpstreamCall] = []

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        self.calls.append(call)
        for item in self.script:
            if isinstance(item, GatewayError):
                raise item
            yield item

    async def aclose(self) -> None:
        return None


OK: Script = [TextDelta("hello"), Usage(3, 1), Finished("stop")]


def _channel(name: str, **fields: object) -> OpenAIChannel:
    return OpenAIChannel(name=name, base_url="http://up", models=["m"], **fields)  # type: ignore[arg-type]


def _router(
    redis: fakeredis.FakeAsyncRedis,
    channels: list[ChannelConfig],
    scripts: dict[str, Script],
    *,
    routing: RoutingConfig | None = None,
    seed: int = 1,
) -> tuple[Router, dict[str, _Scripted], Cooldowns]:
    providers = {name: _Scripted(script) for name, script in scripts.items()}
    registry = ProviderRegistry()
    registry.register(OpenAIChannel, lambda channel: providers.get(channel.name) or _Scripted(OK))
    cooldowns = Cooldowns()
    router = Router(
        providers=ProviderPool(registry, channels),
        scripts=Scripts(redis),
        routing=routing or RoutingConfig(backoff_s=0, cooldown_s=30),
        cooldowns=cooldowns,
        slot_ttl_s=3,
        rng=random.Random(seed),
    )
    return router, providers, cooldowns


def _request(generation_id: str = "g1") -> GenerationRequest:
    return GenerationRequest(generation_id, "req", "m", [Message("user", [TextPart("hi")])], "relay", 1)


async def _run(router: Router, request: GenerationRequest | None = None) -> list[ProviderOutput]:
    return [output async for output in router.stream(request or _request(), None)]


def test_priority_comes_first_and_accounts_take_turns(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    accounts = [AccountConfig(name="a1", api_key="k1"), AccountConfig(name="a2", api_key="k2")]
    router, _, _ = _router(
        fake_redis, [_channel("backup", priority=5), _channel("main", priority=1, accounts=accounts)], {}
    )
    first, second = router.plan("m"), router.plan("m")
    assert [(a.route.channel.name, a.account.name) for a in first] == [
        ("main", "a1"),
        ("main", "a2"),
        ("backup", "default"),
    ]
    assert [a.account.name for a in second][:2] == ["a2", "a1"]


def test_weights_share_traffic_among_equal_priorities(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    router, _, _ = _router(fake_redis, [_channel("heavy", weight=3), _channel("light", weight=1)], {})
    firsts = Counter(router.plan("m")[0].route.channel.name for _ in range(4000))
    assert 0.70 < firsts["heavy"] / 4000 < 0.80


async def test_a_failure_before_output_moves_on_and_cools_the_account_down(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    pubsub = fake_redis.pubsub()
    await pubsub.subscribe(COOLDOWN_TOPIC)
    router, providers, cooldowns = _router(
        fake_redis,
        [_channel("a", priority=1), _channel("b", priority=2)],
        {"a": [Usage(5, 0), UpstreamError("boom", code="upstream_500")], "b": OK},
    )
    assert await _run(router) == OK
    assert len(providers["a"].calls) == len(providers["b"].calls) == 1
    assert cooldowns.cooling("a", "default")
    assert [a.route.channel.name for a in router.plan("m")] == ["b", "a"]
    assert b"upstream_500" in (await fake_redis.get(ChannelKeys.health("a", "default")) or b"")
    message = await next_message(pubsub)
    assert message is not None and b'"channel":"a"' in message["data"]


async def test_a_failure_after_output_ends_the_generation(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    router, providers, _ = _router(
        fake_redis,
        [_channel("a", priority=1), _channel("b", priority=2)],
        {"a": [TextDelta("par"), UpstreamError("cut", code="upstream_stream_error")], "b": OK},
    )
    outputs: list[ProviderOutput] = []
    with pytest.raises(UpstreamError, match="cut"):
        async for output in router.stream(_request(), None):
            outputs.append(output)
    assert outputs == [TextDelta("par")]
    assert providers["b"].calls == []


async def test_client_mistakes_are_not_retried(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    router, providers, cooldowns = _router(
        fake_redis, [_channel("a"), _channel("b", priority=1)], {"a": [InvalidRequest("bad")], "b": OK}
    )
    with pytest.raises(InvalidRequest):
        await _run(router)
    assert providers["b"].calls == [] and not cooldowns.cooling("a", "default")


async def test_attempts_are_bounded_and_the_last_error_is_reported(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    channels = [_channel(name, priority=number) for number, name in enumerate("abc")]
    scripts: dict[str, Script] = {
        "a": [RateLimited("slow down", retry_after=60)],
        "b": [UpstreamError("down")],
        "c": OK,
    }
    router, providers, cooldowns = _router(
        fake_redis, channels, scripts, routing=RoutingConfig(max_attempts=2, backoff_s=0, cooldown_s=1)
    )
    with pytest.raises(UpstreamError, match="down"):
        await _run(router)
    assert providers["c"].calls == []
    # A 429's Retry-After outlasts a shorter configured cooldown.
    assert cooldowns.remaining_s("a", "default") > 50 > cooldowns.remaining_s("b", "default")


async def test_a_full_channel_is_skipped_and_all_full_is_429(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    router, providers, _ = _router(
        fake_redis, [_channel("a", priority=1, max_concurrency=1), _channel("b", priority=2)], {"a": OK, "b": OK}
    )
    scripts = Scripts(fake_redis)
    await scripts.slot(keys=[ChannelKeys.running("a")], args=["other", 1, 60_000])
    assert await _run(router) == OK
    assert providers["a"].calls == [] and len(providers["b"].calls) == 1

    only_full, _, _ = _router(fake_redis, [_channel("a", max_concurrency=1)], {"a": OK})
    with pytest.raises(RateLimited) as caught:
        await _run(only_full)
    assert caught.value.code == "channels_busy"


async def test_a_running_generation_holds_its_place_until_it_ends(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    router, _, _ = _router(fake_redis, [_channel("a", max_concurrency=2)], {"a": OK})
    stream = router.stream(_request("g9"), None)
    assert await anext(stream) == TextDelta("hello")
    assert await fake_redis.zrange(ChannelKeys.running("a"), 0, -1) == [b"g9"]
    assert [output async for output in stream][-1] == Finished("stop")
    assert await fake_redis.zcard(ChannelKeys.running("a")) == 0


async def test_a_reply_that_is_an_error_text_is_retried(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    error_text = "An error has occurred. Please try again later."
    failing: Script = [TextDelta("An error has "), TextDelta("occurred. Please try again later. "), Finished("stop")]
    router, providers, _ = _router(
        fake_redis,
        [_channel("a", priority=1, error_texts=[error_text]), _channel("b", priority=2)],
        {"a": failing, "b": OK},
    )
    assert await _run(router) == OK
    assert len(providers["a"].calls) == 1


async def test_a_reply_that_only_starts_like_an_error_text_streams_whole(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    script: Script = [TextDelta("An error"), TextDelta(" is human."), TextDelta(" Yes."), Finished("stop")]
    router, _, _ = _router(fake_redis, [_channel("a", error_texts=["An error has occurred."])], {"a": script})
    outputs = await _run(router)
    assert outputs == [TextDelta("An error is human."), TextDelta(" Yes."), Finished("stop")]


async def test_unknown_models_are_404(fake_redis: fakeredis.FakeAsyncRedis) -> None:
    router, _, _ = _router(fake_redis, [_channel("a")], {"a": OK})
    request = GenerationRequest("g1", "req", "nope", [], "relay", 1)
    with pytest.raises(GatewayError) as caught:
        await _run(router, request)
    assert caught.value.status == 404
