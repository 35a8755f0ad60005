"""Routing through real processes: failover between channels, cooldown, concurrency limits, error texts,
and the admin API changing channels at runtime."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses, free_port

ADMIN_KEY = "admin-secret-key-0123"
ERROR_TEXT = "An error has occurred. Please try again later."


def _config(upstream: str) -> str:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return f"""
[routing]
backoff_s = 0.01
cooldown_s = 60

[[channels]]
name = "broken"
type = "openai"
base_url = "{upstream}"
priority = 1
models = [{{ name = "routed", upstream = "fake-error-500" }}]

[[channels]]
name = "unreachable"
type = "openai"
base_url = "{dead}"
priority = 2
models = [{{ name = "routed", upstream = "fake-model" }}]

[[channels]]
name = "healthy"
type = "openai"
base_url = "{upstream}"
priority = 3
models = [{{ name = "routed", upstream = "fake-model" }}]

[[channels]]
name = "solo"
type = "openai"
base_url = "{upstream}"
max_concurrency = 1
models = [{{ name = "solo-slow", upstream = "fake-slow" }}]

[[channels]]
name = "wordy"
type = "openai"
base_url = "{upstream}"
priority = 1
error_texts = ["{ERROR_TEXT}"]
models = [{{ name = "guarded", upstream = "fake-echo" }}]

[[channels]]
name = "wordy-alone"
type = "openai"
base_url = "{upstream}"
error_texts = ["{ERROR_TEXT}"]
models = [{{ name = "guarded-alone", upstream = "fake-echo" }}]

[[channels]]
name = "fallback"
type = "openai"
base_url = "{upstream}"
priority = 2
models = [{{ name = "guarded", upstream = "fake-model" }}]
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFakeUpstream]:
    with RunningFakeUpstream(chunks=3) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(redis_url: str, fake: RunningFakeUpstream) -> Iterator[GatewayProcesses]:
    env = {"AIAPI_ADMIN_KEY": ADMIN_KEY}
    with GatewayProcesses(redis_url=redis_url, config_toml=_config(fake.base_url), env=env) as processes:
        yield processes


@pytest.fixture
def client(gateway: GatewayProcesses) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key="test", max_retries=0, timeout=20) as sdk:
        yield sdk


def _by_model(fake: RunningFakeUpstream) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{fake.root_url}/_stats").json()["by_model"]
    return counts


def _eventually(check: Callable[[], bool], timeout_s: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_failover_passes_failing_channels_and_cools_them_down(client: openai.OpenAI, fake: RunningFakeUpstream) -> None:
    before = _by_model(fake)
    reply = client.chat.completions.create(model="routed", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "chunk0 chunk1 chunk2"
    after = _by_model(fake)
    assert after.get("fake-error-500", 0) - before.get("fake-error-500", 0) == 1
    # Both failed channels now rest: the next request goes straight to the healthy one, streaming too.
    stream = client.chat.completions.create(model="routed", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "chunk0 chunk1 chunk2"
    assert _by_model(fake).get("fake-error-500", 0) == after["fake-error-500"]


def test_a_full_channel_answers_429_with_retry_after(client: openai.OpenAI) -> None:
    def ask() -> str:
        try:
            client.chat.completions.create(model="solo-slow", messages=[{"role": "user", "content": "hi"}])
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"] == "1"
            return "busy"
        return "ok"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(ask)
        time.sleep(0.5)
        second = pool.submit(ask)
        assert sorted([first.result(), second.result()]) == ["busy", "ok"]
    assert ask() == "ok", "the place is free again once the first generation ended"


def test_a_reply_that_is_a_configured_error_text_is_retried_elsewhere(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="guarded", messages=[{"role": "user", "content": ERROR_TEXT}])
    assert reply.choices[0].message.content == "chunk0 chunk1 chunk2"
    # A reply that only starts like the error text is streamed whole.
    stream = client.chat.completions.create(
        model="guarded-alone", messages=[{"role": "user", "content": "An error has a cause."}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "An error has a cause."


def _admin(
    gateway: GatewayProcesses, method: str, path: str, key: str | None = ADMIN_KEY, **kw: object
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    root = gateway.base_url.removesuffix("/v1")
    return httpx.request(method, f"{root}/admin{path}", headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_the_admin_api_needs_its_key(gateway: GatewayProcesses) -> None:
    for key in (None, "wrong"):
        reply = _admin(gateway, "GET", "/channels", key=key)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_api_key"


def test_channels_added_and_removed_at_runtime_reach_api_and_worker(
    gateway: GatewayProcesses, client: openai.OpenAI, fake: RunningFakeUpstream
) -> None:
    channel = {
        "type": "openai",
        "name": "runtime",
        "base_url": fake.base_url,
        "models": [{"name": "runtime-model", "upstream": "fake-model"}],
        "accounts": [{"name": "main", "api_key": "sk-runtime-secret-key"}],
    }
    created = _admin(gateway, "PUT", "/channels/runtime", json=channel)
    assert created.status_code == 200, created.text
    view = created.json()
    assert view["source"] == "admin" and view["accounts"][0]["has_key"] is True
    assert "sk-runtime-secret-key" not in created.text
    assert "runtime-model" in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(model="runtime-model", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "chunk0 chunk1 chunk2"

    listed = _admin(gateway, "GET", "/channels").json()["data"]
    broken = next(c for c in listed if c["name"] == "broken")
    assert broken["source"] == "config" and "upstream_500" in (broken["accounts"][0]["cooling_down"] or "")

    assert _admin(gateway, "DELETE", "/channels/runtime/accounts/main").status_code == 200
    assert _admin(gateway, "DELETE", "/channels/runtime").json() == {"id": "runtime", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="runtime-model", messages=[{"role": "user", "content": "hi"}])
    assert _admin(gateway, "GET", "/channels/runtime").status_code == 404


def test_the_admin_api_rejects_invalid_channels(gateway: GatewayProcesses) -> None:
    bad_type = _admin(gateway, "PUT", "/channels/x", json={"type": "nope", "name": "x", "models": ["m"]})
    assert bad_type.status_code == 400 and "type" in bad_type.json()["error"]["message"]
    no_models = {"type": "mock", "name": "x", "models": []}
    assert _admin(gateway, "PUT", "/channels/x", json=no_models).status_code == 400
    mismatch = {"type": "mock", "name": "y", "models": ["m"]}
    assert _admin(gateway, "PUT", "/channels/x", json=mismatch).status_code == 400


def test_a_masked_view_put_back_elsewhere_needs_its_key_again(
    gateway: GatewayProcesses, fake: RunningFakeUpstream
) -> None:
    channel = {
        "type": "openai",
        "base_url": fake.base_url,
        "models": ["fake-model"],
        "accounts": [{"name": "main", "api_key": "sk-moving-secret-key"}],
    }
    # The name comes from the path; the body need not repeat it.
    assert _admin(gateway, "PUT", "/channels/moving", json=channel).status_code == 200
    view = _admin(gateway, "GET", "/channels/moving").json()["config"]
    assert view["accounts"][0]["api_key"] != "sk-moving-secret-key"
    moved = _admin(gateway, "PUT", "/channels/moving", json={**view, "base_url": "http://attacker.example/v1"})
    assert moved.status_code == 400 and moved.json()["error"]["param"] == "accounts[0].api_key"
    retyped = _admin(gateway, "PUT", "/channels/moving", json={**view, "type": "anthropic"})
    assert retyped.status_code == 400 and retyped.json()["error"]["param"] == "accounts[0].api_key"
    kept = _admin(gateway, "PUT", "/channels/moving", json={**view, "weight": 2})
    assert kept.status_code == 200 and kept.json()["accounts"][0]["has_key"] is True
    assert _admin(gateway, "DELETE", "/channels/moving").status_code == 200


def test_a_channel_removed_from_the_config_at_runtime_stops_serving(
    gateway: GatewayProcesses, client: openai.OpenAI
) -> None:
    assert _admin(gateway, "DELETE", "/channels/solo").status_code == 200
    assert _eventually(lambda: "solo-slow" not in [m.id for m in client.models.list()])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="solo-slow", messages=[{"role": "user", "content": "hi"}])


def test_without_a_key_the_admin_api_is_off(redis_url: str, fake: RunningFakeUpstream) -> None:
    config = '[[channels]]\nname = "m"\ntype = "mock"\nmodels = ["mock-1"]\n'
    with GatewayProcesses(redis_url=redis_url, config_toml=config, env={"AIAPI_ADMIN_KEY": ""}) as gateway:
        reply = _admin(gateway, "GET", "/channels")
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "admin_disabled"
