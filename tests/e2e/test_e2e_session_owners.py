"""A session belongs to the key that started it: another key resending its reply (zero-width marker and
all, or the same history in hash mode) gets a session of its own. It is never refused with 409 while the
owner streams, cannot cancel the owner's run with ``cancel_previous``, and does not continue the owner's
chayns thread."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.chayns_upstream import RunningChaynsUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

KEY_A = "sk-owner-a-key"
KEY_B = "sk-owner-b-key"
CONFIG = """
[worker]
lease_ttl_s = 2
[relay]
idle_check_s = 0.3
[sessions]
mode = "{mode}"
[access]
mode = "keys"
[[access.keys]]
name = "a"
key_sha256 = "{key_a}"
[[access.keys]]
name = "b"
key_sha256 = "{key_b}"

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
name = "chayns"
type = "chayns"
base_url = "{chayns}"
auth_url = "{chayns}"
api_key = "token-a"
poll_interval_s = 0.02
models = ["fake-chat"]
"""


@pytest.fixture(scope="module")
def chayns() -> Iterator[RunningChaynsUpstream]:
    with RunningChaynsUpstream(empty_polls=2) as fake:
        yield fake


@pytest.fixture(scope="module", params=["zero_width", "hash"])
def gateway(
    request: pytest.FixtureRequest, redis_url: str, chayns: RunningChaynsUpstream
) -> Iterator[GatewayProcesses]:
    config = CONFIG.format(
        mode=request.param,
        key_a=hashlib.sha256(KEY_A.encode()).hexdigest(),
        key_b=hashlib.sha256(KEY_B.encode()).hexdigest(),
        chayns=chayns.url,
    )
    with GatewayProcesses(redis_url=redis_url, config_toml=config) as processes:
        yield processes


def _sdk(gateway: GatewayProcesses, key: str, concurrency: str | None = None) -> openai.OpenAI:
    headers = {"x-aiapi-concurrency": concurrency} if concurrency else None
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20, default_headers=headers)


class Streaming:
    """A streaming chat request read on a thread; it records the text and how it ended."""

    def __init__(self, sdk: openai.OpenAI, messages: list[Any]) -> None:
        self.text = ""
        self.error: Exception | None = None
        self.first = threading.Event()
        self._stream = sdk.chat.completions.create(model="slow-mock", messages=messages, stream=True)
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

    def join(self) -> None:
        self._thread.join(20)


def _first_turn(sdk: openai.OpenAI, text: str, model: str = "fast-mock") -> list[Any]:
    reply = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    content = reply.choices[0].message.content or ""
    return [{"role": "user", "content": text}, {"role": "assistant", "content": content}]


def test_another_key_resending_a_reply_is_not_blocked_by_the_owners_run(gateway: GatewayProcesses) -> None:
    with _sdk(gateway, KEY_A) as owner, _sdk(gateway, KEY_B) as other:
        history = _first_turn(owner, "gate of a")
        running = Streaming(owner, [*history, {"role": "user", "content": "long answer"}])
        # While the owner streams, its own second request is refused, the other key's is not.
        with pytest.raises(openai.ConflictError):
            owner.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "x"}])
        reply = other.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "b"}])
        assert (reply.choices[0].message.content or "").startswith("you said b")
        running.join()
        assert running.error is None and running.text.startswith("one two") and "fifteen" in running.text


def test_another_keys_cancel_previous_does_not_stop_the_owners_run(gateway: GatewayProcesses) -> None:
    with _sdk(gateway, KEY_A) as owner, _sdk(gateway, KEY_B, "cancel_previous") as other:
        history = _first_turn(owner, "take over a")
        running = Streaming(owner, [*history, {"role": "user", "content": "slow"}])
        reply = other.chat.completions.create(model="fast-mock", messages=[*history, {"role": "user", "content": "b"}])
        assert (reply.choices[0].message.content or "").startswith("you said b")
        running.join()
        assert running.error is None and "fifteen" in running.text


def test_another_key_does_not_continue_the_owners_chayns_thread(
    gateway: GatewayProcesses, chayns: RunningChaynsUpstream
) -> None:
    with _sdk(gateway, KEY_A) as owner, _sdk(gateway, KEY_B) as other:
        history = _first_turn(owner, "thread of a", model="fake-chat")
        created = httpx.get(f"{chayns.url}/_stats", timeout=5).json()["threads_created"]
        messages = [*history, {"role": "user", "content": "b asks"}]
        reply = other.chat.completions.create(model="fake-chat", messages=messages).choices[0].message.content or ""
        # A fresh thread gets the whole conversation as a transcript; the owner's thread would get only "b asks".
        assert reply.startswith("reply 1 to: [User]\nthread of a")
        assert httpx.get(f"{chayns.url}/_stats", timeout=5).json()["threads_created"] == created + 1
        # The owner's own next turn still continues its thread.
        mine = owner.chat.completions.create(model="fake-chat", messages=[*history, {"role": "user", "content": "a"}])
        assert (mine.choices[0].message.content or "").startswith("reply 2 to: a")
