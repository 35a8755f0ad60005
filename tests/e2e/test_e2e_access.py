"""API keys through real processes and the openai SDK: keys mode with configured and admin-created keys,
model restrictions, rpm and tpm limits, revocation, and usage after finished and cancelled streams."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.harness import GatewayProcesses

ADMIN_KEY = "admin-secret-key-access"
MAIN_KEY = "sk-e2e-main-key"
LIMITED_KEY = "sk-e2e-limited-key"
TOKENS_KEY = "sk-e2e-tokens-key"
BIG_REPLY = " ".join(f"word{i}" for i in range(60))
SLOW_REPLY = " ".join(f"slow{i}" for i in range(60))

CONFIG = f"""
[relay]
idle_check_s = 0.5

[access]
mode = "keys"
cache_s = 1.0

[[access.keys]]
name = "main"
key_env = "AIAPI_E2E_MAIN_KEY"
models = ["mock-1", "mock-slow"]

[[access.keys]]
name = "limited"
key_sha256 = "{hashlib.sha256(LIMITED_KEY.encode()).hexdigest()}"
rpm = 2

[[access.keys]]
name = "tokens"
key_env = "AIAPI_E2E_TOKENS_KEY"
tpm = 40

[[channels]]
name = "mock"
type = "mock"
models = ["mock-1", "mock-2"]

[[channels]]
name = "big"
type = "mock"
models = ["mock-big"]
reply = "{BIG_REPLY}"

[[channels]]
name = "slow"
type = "mock"
models = ["mock-slow"]
tokens_per_second = 20
reply = "{SLOW_REPLY}"
"""

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def gateway(redis_url: str) -> Iterator[GatewayProcesses]:
    env = {"AIAPI_ADMIN_KEY": ADMIN_KEY, "AIAPI_E2E_MAIN_KEY": MAIN_KEY, "AIAPI_E2E_TOKENS_KEY": TOKENS_KEY}
    with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG, env=env) as processes:
        yield processes


def _client(gateway: GatewayProcesses, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20)


def _admin(gateway: GatewayProcesses, method: str, path: str, **kw: Any) -> httpx.Response:
    root = gateway.base_url.removesuffix("/v1")
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.request(method, f"{root}/admin{path}", headers=headers, timeout=10, **kw)


def _eventually(check: Callable[[], bool], timeout_s: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _model_usage(gateway: GatewayProcesses, key: str, model: str) -> dict[str, Any]:
    reply = _admin(gateway, "GET", f"/keys/{key}/usage")
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = next((m for m in reply.json()["models"] if m["model"] == model), {})
    return found


def test_requests_need_a_known_key(gateway: GatewayProcesses) -> None:
    for path, body in (("/chat/completions", {"model": "mock-1", "messages": HI}), ("/responses", {"input": "x"})):
        missing = httpx.post(f"{gateway.base_url}{path}", json=body, timeout=10)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{gateway.base_url}/models", timeout=10).status_code == 401
    with _client(gateway, "sk-wrong") as wrong, pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"

    with _client(gateway, MAIN_KEY) as client:
        reply = client.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
        assert "mock-1" in [model.id for model in client.models.list()]
        response = client.responses.create(model="mock-1", input="hello")
        assert client.responses.retrieve(response.id).output_text == response.output_text
    with _client(gateway, "sk-wrong") as wrong, pytest.raises(openai.AuthenticationError):
        wrong.responses.retrieve(response.id)


def test_a_model_the_key_may_not_use_is_403(gateway: GatewayProcesses) -> None:
    with _client(gateway, MAIN_KEY) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="mock-2", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_allowed"
    with _client(gateway, MAIN_KEY) as client:
        assert sorted(model.id for model in client.models.list()) == ["mock-1", "mock-slow"], "only its models"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("mock-2")
    with _client(gateway, LIMITED_KEY) as client:
        assert client.chat.completions.create(model="mock-2", messages=HI).choices  # type: ignore[arg-type]
        assert {"mock-1", "mock-2", "mock-slow"} <= {model.id for model in client.models.list()}


def test_requests_over_rpm_are_429_with_retry_after(gateway: GatewayProcesses) -> None:
    with _client(gateway, LIMITED_KEY) as client:
        # One request of this key was made by the previous test; the window is a minute long.
        client.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60


def test_a_big_generation_exhausts_tpm(gateway: GatewayProcesses) -> None:
    with _client(gateway, TOKENS_KEY) as client:
        reply = client.chat.completions.create(model="mock-big", messages=HI)  # type: ignore[arg-type]
        assert reply.usage is not None and reply.usage.completion_tokens == 60
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]
    assert "tokens per minute" in caught.value.message
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    usage = _admin(gateway, "GET", "/keys/tokens/usage").json()
    assert usage["tokens_last_minute"] == usage["spent_tokens"] == reply.usage.total_tokens


def test_an_admin_created_key_works_until_it_is_deleted(gateway: GatewayProcesses) -> None:
    created = _admin(gateway, "POST", "/keys", json={"name": "runtime", "models": ["mock-1"]})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("sk-aiapi-")
    assert _admin(gateway, "POST", "/keys", json={"name": "runtime"}).status_code == 409
    listed = _admin(gateway, "GET", "/keys")
    assert key not in listed.text
    sources = {k["name"]: k["source"] for k in listed.json()["data"]}
    assert sources == {"main": "config", "limited": "config", "tokens": "config", "runtime": "admin"}

    with _client(gateway, key) as client:
        assert client.chat.completions.create(model="mock-1", messages=HI).choices  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="mock-2", messages=HI)  # type: ignore[arg-type]
        changed = _admin(gateway, "PATCH", "/keys/runtime", json={"rpm": 1})
        assert changed.status_code == 200 and changed.json()["rpm"] == 1 and "key" not in changed.json()
        client.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="mock-1", messages=HI)  # type: ignore[arg-type]

        assert _admin(gateway, "DELETE", "/keys/runtime").json() == {"id": "runtime", "deleted": True}

        def revoked() -> bool:
            try:
                client.models.list()
            except openai.AuthenticationError:
                return True
            return False

        assert _eventually(revoked, timeout_s=3.0), "revoked within [access] cache_s"
    assert _admin(gateway, "GET", "/keys/runtime").status_code == 404
    assert _admin(gateway, "DELETE", "/keys/main").status_code == 409, "config keys are changed in the file"


def test_usage_after_a_stream_and_after_a_cancelled_one(gateway: GatewayProcesses) -> None:
    key = _admin(gateway, "POST", "/keys", json={"name": "metered"}).json()["key"]
    with _client(gateway, key) as client:
        stream = client.chat.completions.create(
            model="mock-1",
            messages=HI,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        reported = next(chunk.usage for chunk in stream if chunk.usage is not None)
        assert _eventually(lambda: _model_usage(gateway, "metered", "mock-1").get("requests") == 1)
        usage = _model_usage(gateway, "metered", "mock-1")
        assert usage["errors"] == 0
        assert (usage["input_tokens"], usage["output_tokens"]) == (reported.prompt_tokens, reported.completion_tokens)

        slow = client.chat.completions.create(model="mock-slow", messages=HI, stream=True)  # type: ignore[arg-type]
        received = [chunk for _, chunk in zip(range(3), slow, strict=False)]
        slow.close()
        assert len(received) == 3
    assert _eventually(lambda: _model_usage(gateway, "metered", "mock-slow").get("requests") == 1)
    cancelled = _model_usage(gateway, "metered", "mock-slow")
    # Cancelled before the model reported its usage: a failed request, charged what it had streamed, estimated.
    assert cancelled["errors"] == 1 and cancelled["estimated"] == 1
    assert cancelled["input_tokens"] > 0 and cancelled["output_tokens"] > 0
    total = _admin(gateway, "GET", "/keys/metered/usage").json()
    assert total["total"]["requests"] == 2 and total["total"]["errors"] == 1
    estimate = cancelled["input_tokens"] + cancelled["output_tokens"]
    assert total["spent_tokens"] == reported.total_tokens + estimate


def test_usage_of_a_background_response_nobody_watched(gateway: GatewayProcesses) -> None:
    key = _admin(gateway, "POST", "/keys", json={"name": "unwatched"}).json()["key"]
    with _client(gateway, key) as client:
        created = client.responses.create(model="mock-1", input="hi", background=True)
        assert created.status in ("queued", "in_progress")
        assert _eventually(lambda: _model_usage(gateway, "unwatched", "mock-1").get("requests") == 1)
        done = client.responses.retrieve(created.id)
    usage = _model_usage(gateway, "unwatched", "mock-1")
    assert done.usage is not None and usage["estimated"] == 0
    assert (usage["input_tokens"], usage["output_tokens"]) == (done.usage.input_tokens, done.usage.output_tokens)


def test_a_request_refused_at_the_session_gate_gives_its_tokens_back(gateway: GatewayProcesses) -> None:
    key = _admin(gateway, "POST", "/keys", json={"name": "gated", "tpm": 100_000}).json()["key"]
    conversation: Any = [*HI, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Tell me more."}]
    with _client(gateway, key) as client:
        running = client.chat.completions.create(model="mock-slow", messages=conversation, stream=True)
        next(iter(running))
        for _ in range(5):
            with pytest.raises(openai.ConflictError):
                client.chat.completions.create(model="mock-slow", messages=conversation)
        chunks = list(running)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert _eventually(lambda: _model_usage(gateway, "gated", "mock-slow").get("requests") == 1)
    usage = _admin(gateway, "GET", "/keys/gated/usage").json()
    # Only the generation that ran is in the window: the five 409s' reservations were given back.
    assert usage["tokens_last_minute"] == usage["spent_tokens"] > 0
