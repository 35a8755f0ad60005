"""Faults through real processes: vanished clients, dead workers, no workers, graceful shutdown."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from redis import Redis

from api.delivery.queueing import WORKER_HEALTH_S
from shared import keys
from shared.redis_server import EmbeddedRedis
from tests.e2e.conftest import gateway_config
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "go"}]
SLOW_MOCK = """
[[channels]]
name = "slow"
type = "mock"
models = ["slow-mock"]
tokens_per_second = {rate}
reply = "{reply}"
"""


def _wait_for(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_client_disconnect_cancels_the_upstream_call(gateway: GatewayProcesses, upstream: RunningFakeUpstream) -> None:
    before = httpx.get(f"{upstream.root_url}/_stats").json()["disconnects"]
    with openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(model="fake-stall", messages=MESSAGES, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        stream.close()
    assert _wait_for(lambda: httpx.get(f"{upstream.root_url}/_stats").json()["disconnects"] > before, 3.0)


def test_a_client_that_gives_up_waiting_cancels_the_upstream_call(
    gateway: GatewayProcesses, upstream: RunningFakeUpstream
) -> None:
    """A non-streaming client is sent nothing until the end, so only its disconnect says it left."""
    before = httpx.get(f"{upstream.root_url}/_stats").json()["disconnects"]
    body = {"model": "fake-stall", "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=1)
    assert _wait_for(lambda: httpx.get(f"{upstream.root_url}/_stats").json()["disconnects"] > before, 3.0)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_before_any_output_cancels_its_generation(redis_url: str, stream: bool) -> None:
    config = '[[channels]]\nname = "late"\ntype = "mock"\nmodels = ["late-mock"]\nfirst_token_ms = 10000\n'
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway:
        body = {"model": "late-mock", "stream": stream, "messages": MESSAGES}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=1)
        redis = Redis.from_url(gateway.redis_url)
        # The generation is cancelled and its worker lets go of it long before the first token was due.
        assert _wait_for(lambda: redis.keys("aiapi:{*}:cancel") and not redis.keys("aiapi:{*}:lease"), 3.0)
        redis.close()


def test_killed_worker_ends_the_stream_with_an_error(redis_url: str) -> None:
    config = "[worker]\nlease_ttl_s = 2\n[relay]\nidle_check_s = 0.5\n" + SLOW_MOCK.format(
        rate=5, reply=" ".join(["word"] * 100)
    )
    with (
        GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=30) as sdk,
    ):
        stream = sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True)
        killed = None
        with pytest.raises(openai.APIError, match="stopped before finishing"):
            for received, _ in enumerate(stream, start=1):
                if received == 3:
                    gateway.workers[0].send_signal(signal.SIGKILL)
                    killed = time.monotonic()
        assert killed is not None and time.monotonic() - killed < 6


def test_no_worker_seen_means_503_at_once(redis_url: str) -> None:
    config = "[relay]\nqueue_timeout_s = 30\n" + SLOW_MOCK.format(rate=0, reply="hi")
    with (
        GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=30) as sdk,
    ):
        time.sleep(WORKER_HEALTH_S + 0.5)  # a fresh API gives starting workers one health interval
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True)
        assert caught.value.status_code == 503 and caught.value.code == "no_worker_available"
        assert time.monotonic() - started < 2
        with Redis.from_url(gateway.redis_url) as redis:
            assert redis.zcard(keys.QUEUE) == 0


def test_a_request_waiting_for_restarting_workers_is_503_after_the_queue_timeout(redis_url: str) -> None:
    config = "[relay]\nqueue_timeout_s = 1.5\nidle_check_s = 0.3\n" + SLOW_MOCK.format(rate=0, reply="hi")
    processes = GatewayProcesses(redis_url=redis_url, config_toml=config, workers=0)
    # A worker was seen moments ago (its health key has not expired): one may come back, so wait.
    with Redis.from_url(processes.redis_url) as seen:
        seen.set(keys.WORKER_HEALTH, b"restarting", px=60_000)
    with (
        processes as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=30) as sdk,
    ):
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="slow-mock", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert time.monotonic() - started < 4
        # The abandoned request was cancelled: a worker that starts now must not run it.
        redis = Redis.from_url(gateway.redis_url)
        cancelled = redis.keys("aiapi:{*}:cancel")
        assert len(cancelled) == 1
        gateway.start_worker()
        time.sleep(1.5)
        generation = cancelled[0].decode().split("{")[1].split("}")[0]
        assert redis.xlen(f"aiapi:{{{generation}}}:events") == 0
        redis.close()


def test_sigterm_lets_running_generations_finish(redis_url: str) -> None:
    config = "[worker]\ndrain_s = 5\n" + SLOW_MOCK.format(rate=10, reply=" ".join(f"w{i}" for i in range(15)))
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway:
        with openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=30) as sdk:
            text = []
            for chunk in sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
                    if len(text) == 2:
                        gateway.workers[0].send_signal(signal.SIGTERM)
            assert "".join(text) == " ".join(f"w{i}" for i in range(15))
        assert gateway.workers[0].wait(timeout=10) == 0


DRAIN = """
[worker]
drain_s = 2
[relay]
queue_timeout_s = 1.5
[[channels]]
name = "short"
type = "mock"
models = ["short-mock"]
tokens_per_second = 10
reply = "{short}"
[[channels]]
name = "long"
type = "mock"
models = ["long-mock"]
tokens_per_second = 10
reply = "{long}"
"""


def test_sigterm_under_load_drains_then_exits_clean(redis_url: str) -> None:
    short, long = " ".join(f"s{i}" for i in range(12)), " ".join(f"l{i}" for i in range(100))
    with GatewayProcesses(redis_url=redis_url, config_toml=DRAIN.format(short=short, long=long)) as gateway:
        sdk = openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=30)
        texts: dict[int, list[str]] = {i: [] for i in range(4)}
        errors: dict[int, Exception] = {}

        def stream(index: int, model: str) -> None:
            try:
                for chunk in sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True):
                    if chunk.choices and chunk.choices[0].delta.content:
                        texts[index].append(chunk.choices[0].delta.content)
            except openai.APIError as exc:
                errors[index] = exc

        models = ["short-mock", "short-mock", "short-mock", "long-mock"]
        threads = [threading.Thread(target=stream, args=(i, model)) for i, model in enumerate(models)]
        for thread in threads:
            thread.start()
        assert _wait_for(lambda: all(len(text) >= 2 for text in texts.values()), 10)
        gateway.workers[0].send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIStatusError) as refused:
            sdk.chat.completions.create(model="short-mock", messages=MESSAGES)
        assert refused.value.status_code == 503, "a draining worker claims no new job"
        for thread in threads:
            thread.join(timeout=15)
        assert ["".join(texts[i]) for i in range(3)] == [short] * 3, "running streams complete"
        assert list(errors) == [3] and "shut down before the generation finished" in str(errors[3])
        assert gateway.workers[0].wait(timeout=10) == 0
        sdk.close()
        redis = Redis.from_url(gateway.redis_url)
        assert not redis.keys("aiapi:{*}:lease"), "every lease was released"
        # The ledger's stream is durable by design: the recorder drains it (none runs here).
        lasting = [key for key in redis.keys("*") if redis.ttl(key) == -1 and key != keys.LEDGER_STREAM.encode()]
        assert lasting in ([], [keys.QUEUE.encode()]), lasting
        assert redis.xlen(keys.LEDGER_STREAM) == 4, "each of the four generations left its record"
        assert redis.zcard(keys.QUEUE) <= 1, "only the refused request's id, which the next poll drops"
        redis.close()


def test_upstream_unreachable_is_502(redis_url: str) -> None:
    with (
        GatewayProcesses(redis_url=redis_url, config_toml=gateway_config("http://127.0.0.1:9/v1")) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0) as sdk,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        sdk.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"


def test_background_response_survives_its_api_instance(redis_url: str) -> None:
    config = SLOW_MOCK.format(rate=20, reply=" ".join(f"w{i}" for i in range(20)))
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as gateway:
        with openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0) as sdk:
            response = sdk.responses.create(model="slow-mock", input="go", background=True)
        gateway.kill_api()
        time.sleep(1.2)  # the run finishes while no API instance exists
        gateway.start_api()
        with openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0) as sdk:
            done = sdk.responses.retrieve(response.id)
    assert done.status == "completed"
    assert done.output_text == " ".join(f"w{i}" for i in range(20))


def test_redis_restarted_while_idle(tmp_path: Path) -> None:
    """Stored responses survive (append-only file), and both roles reconnect by themselves."""
    with EmbeddedRedis(data_dir=tmp_path, persist=True) as redis_server:
        config = SLOW_MOCK.format(rate=0, reply="still here")
        with (
            GatewayProcesses(redis_url=redis_server.url, config_toml=config) as gateway,
            openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=10) as sdk,
        ):
            stored = sdk.responses.create(model="slow-mock", input="before")
            redis_server.restart()
            deadline = time.monotonic() + 10
            while True:
                try:
                    after = sdk.chat.completions.create(model="slow-mock", messages=MESSAGES)
                    break
                except openai.APIStatusError as exc:
                    assert exc.status_code == 503 and time.monotonic() < deadline, exc
                    time.sleep(0.2)
            assert after.choices[0].message.content == "still here"
            assert sdk.responses.retrieve(stored.id).output_text == "still here"
            streamed = "".join(
                c.choices[0].delta.content or ""
                for c in sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=True)
                if c.choices
            )
            assert streamed == "still here"


def test_redis_down_is_a_quick_503_and_the_gateway_recovers_by_itself(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path, persist=True) as redis_server:
        config = SLOW_MOCK.format(rate=0, reply="back again")
        with (
            GatewayProcesses(redis_url=redis_server.url, config_toml=config) as gateway,
            openai.OpenAI(base_url=gateway.base_url, api_key="t", max_retries=0, timeout=15) as sdk,
        ):
            stored = sdk.responses.create(model="slow-mock", input="before")
            redis_server.kill()
            root = gateway.base_url.removesuffix("/v1")
            for stream in (False, True):
                started = time.monotonic()
                with pytest.raises(openai.APIStatusError) as caught:
                    sdk.chat.completions.create(model="slow-mock", messages=MESSAGES, stream=stream)
                assert caught.value.status_code == 503 and time.monotonic() - started < 3.0, "no hang"
                assert caught.value.type == "service_unavailable" or caught.value.code
            assert httpx.get(f"{root}/readyz", timeout=5).status_code == 503
            with pytest.raises(openai.APIStatusError) as caught:
                sdk.responses.retrieve(stored.id)
            assert caught.value.status_code == 503
            redis_server.start()
            deadline = time.monotonic() + 15
            while True:
                try:
                    after = sdk.chat.completions.create(model="slow-mock", messages=MESSAGES)
                    break
                except openai.APIStatusError as exc:
                    assert exc.status_code == 503 and time.monotonic() < deadline, exc
                    time.sleep(0.2)
            assert after.choices[0].message.content == "back again"
            assert sdk.responses.retrieve(stored.id).output_text == "back again", "stored data survived the crash"
            assert httpx.get(f"{root}/readyz", timeout=5).status_code == 200
