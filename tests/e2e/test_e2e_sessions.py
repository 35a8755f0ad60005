"""Sessions and the execution gate across real processes: 409, take-over, disconnects, dead workers."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from shared.sessions import decode_zero_width
from tests.fakes.openai_upstream import RunningFakeUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

CONFIG = """
[worker]
lease_ttl_s = 2
[relay]
idle_check_s = 0.3
[sessions]
mode = "{mode}"

[[channels]]
name = "slow"
type = "mock"
models = ["slow-mock"]
tokens_per_second = 25
reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"

[[channels]]
name = "fast"
type = "mock"
models = ["fast-mock"]
reply = "you said {{prompt}}"

[[channels]]
name = "fake"
type = "openai"
base_url = "{upstream}"
models = ["fake-transcript", "fake-tools"]
"""
TOOL: Any = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def _gateway(redis_url: str, upstream: RunningFakeUpstream, mode: str) -> GatewayProcesses:
    return GatewayProcesses(redis_url=redis_url, config_toml=CONFIG.format(mode=mode, upstream=upstream.base_url))


@pytest.fixture(scope="module")
def hashed(redis_url: str, upstream: RunningFakeUpstream) -> Iterator[GatewayProcesses]:
    with _gateway(redis_url, upstream, "hash") as gateway:
        yield gateway


def _sdk(gateway: GatewayProcesses, concurrency: str | None = None) -> openai.OpenAI:
    headers = {"x-aiapi-concurrency": concurrency} if concurrency else None
    return openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0, timeout=20, default_headers=headers)


class Background:
    """A streaming chat request consumed on a thread; it records the text and how it ended."""

    def __init__(self, sdk: openai.OpenAI, messages: list[Any], model: str = "slow-mock") -> None:
        self.text = ""
        self.error: Exception | None = None
        self.first = threading.Event()
        self._stream = sdk.chat.completions.create(model=model, messages=messages, stream=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.first.wait(10)

    def _read(self) -> None:
        try:
            for chunk in self._stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.text += chunk.choices[0].delta.content
                    self.first.set()
        except Exception as exc:
            self.error = exc
        finally:
            self.first.set()

    def close(self) -> None:
        self._stream.close()

    def join(self) -> None:
        self._thread.join(20)


def _first_turn(sdk: openai.OpenAI, text: str) -> list[Any]:
    reply = sdk.chat.completions.create(model="fast-mock", messages=[{"role": "user", "content": text}])
    return [{"role": "user", "content": text}, {"role": "assistant", "content": reply.choices[0].message.content}]


def test_a_concurrent_request_in_a_session_gets_409_before_any_byte(hashed: GatewayProcesses) -> None:
    with _sdk(hashed) as sdk:
        history = _first_turn(sdk, "gate me")
        running = Background(sdk, [*history, {"role": "user", "content": "long answer"}])
        with pytest.raises(openai.ConflictError) as caught:
            sdk.chat.completions.create(
                model="fast-mock", messages=[*history, {"role": "user", "content": "again"}], stream=True
            )
        assert caught.value.code == "concurrent_request"
        running.join()
        assert running.error is None and running.text.endswith("fifteen")
        # Once the first run is over, the session is free again.
        assert sdk.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "x"}])


def test_cancel_previous_takes_over_and_stops_the_first_run(hashed: GatewayProcesses) -> None:
    with _sdk(hashed, "cancel_previous") as sdk:
        history = _first_turn(sdk, "take over")
        first = Background(sdk, [*history, {"role": "user", "content": "slow"}])
        second = sdk.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "now"}])
        assert second.choices[0].message.content == "you said now"
        first.join()
        assert isinstance(first.error, openai.APIError)
        assert not first.text.endswith("fifteen")


def test_the_session_survives_tool_turns_markers_and_dropped_turns(hashed: GatewayProcesses) -> None:
    with _sdk(hashed) as sdk:
        ask = {"role": "user", "content": "use the tool"}
        called = sdk.chat.completions.create(model="fake-tools", messages=[ask], tools=[TOOL]).choices[0].message
        assert called.tool_calls
        call = called.tool_calls[0]
        echoed = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
        }
        result = {"role": "tool", "tool_call_id": call.id, "content": "42"}
        answer = sdk.chat.completions.create(
            model="fast-mock", messages=[ask, echoed, result, {"role": "user", "content": "so?"}]
        )
        reply = answer.choices[0].message.content or ""
        history = [ask, echoed, result, {"role": "user", "content": "so?"}, {"role": "assistant", "content": reply}]
        running = Background(sdk, [*history, {"role": "user", "content": "go on"}])
        # The same conversation with its oldest turns dropped and an invisible character added to the reply.
        trimmed = [
            history[3],
            {"role": "assistant", "content": "  " + reply + "\u200b"},
            {"role": "user", "content": "?"},
        ]
        with pytest.raises(openai.ConflictError):
            sdk.chat.completions.create(model="fast-mock", messages=trimmed)
        running.join()


def test_a_client_that_disconnects_frees_the_session_at_once(hashed: GatewayProcesses) -> None:
    with _sdk(hashed) as sdk:
        history = _first_turn(sdk, "leaving")
        running = Background(sdk, [*history, {"role": "user", "content": "slow"}])
        running.close()
        running.join()
        deadline = time.monotonic() + 3
        while True:
            try:
                sdk.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "b"}])
                break
            except openai.ConflictError:
                assert time.monotonic() < deadline, "the gate was not released after the client left"
                time.sleep(0.05)


def test_a_killed_worker_frees_the_session_within_the_lease_ttl(redis_url: str, upstream: RunningFakeUpstream) -> None:
    with _gateway(redis_url, upstream, "hash") as gateway, _sdk(gateway) as sdk:
        history = _first_turn(sdk, "crash")
        running = Background(sdk, [*history, {"role": "user", "content": "slow"}])
        gateway.workers[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        gateway.start_worker()
        running.join()
        assert isinstance(running.error, openai.APIError)
        while True:
            try:
                sdk.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "b"}])
                break
            except openai.ConflictError:
                assert time.monotonic() - killed < 5, "the gate outlived the dead worker"
                time.sleep(0.1)


def test_zero_width_mode_hides_the_session_in_the_reply(redis_url: str, upstream: RunningFakeUpstream) -> None:
    with _gateway(redis_url, upstream, "zero_width") as gateway, _sdk(gateway) as sdk:
        first = sdk.chat.completions.create(model="fast-mock", messages=[{"role": "user", "content": "hi"}])
        reply = first.choices[0].message.content or ""
        session_id = decode_zero_width(reply)
        assert session_id is not None and session_id.startswith("sess_")
        assert reply.startswith("you said hi")
        history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": reply}]
        # Nothing invisible reaches the upstream, and the session continues.
        seen = sdk.chat.completions.create(
            model="fake-transcript", messages=[*history, {"role": "user", "content": "more"}]
        )
        transcript = seen.choices[0].message.content or ""
        assert transcript.startswith("user:hi | assistant:you said hi | user:more")
        assert decode_zero_width(transcript) == session_id
        running = Background(sdk, [*history, {"role": "user", "content": "slow"}])
        with pytest.raises(openai.ConflictError):
            sdk.chat.completions.create(model="fast-mock", messages=[{"role": "user", "content": "x"}, history[1]])
        running.join()


def test_responses_chained_by_previous_response_id_share_the_gate(hashed: GatewayProcesses) -> None:
    with _sdk(hashed) as sdk:
        first = sdk.responses.create(model="fast-mock", input="start")
        running = sdk.responses.create(model="slow-mock", input="slow", previous_response_id=first.id, background=True)
        time.sleep(0.2)
        with pytest.raises(openai.ConflictError):
            sdk.responses.create(model="fast-mock", input="parallel", previous_response_id=first.id)
        sdk.responses.cancel(running.id)
        deadline = time.monotonic() + 3
        while True:
            try:
                assert sdk.responses.create(model="fast-mock", input="after", previous_response_id=first.id)
                break
            except openai.ConflictError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
