"""A chayns channel through real processes: the gateway talks to the fake chayns over HTTP, driven by the
official openai SDK. Covers plain chat, thread reuse across turns, image uploads, the Responses API, the
tool bridge and upstream failures."""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.chayns_upstream import RunningChaynsUpstream
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

CONFIG = """
[relay]
idle_check_s = 0.5

[[channels]]
name = "chayns"
type = "chayns"
base_url = "{url}"
auth_url = "{url}"
api_key = "token-a"
poll_interval_s = 0.02
reply_timeout_s = 1.5
models = [
    "fake-chat", "fake-echo", "fake-xml", "fake-silent", "fake-broken",
    {{ name = "gone-model", upstream = "no-such-model" }},
]

[[channels]]
name = "chayns-locked"
type = "chayns"
base_url = "{url}"
auth_url = "{url}"
api_key = "bad-token"
models = [{{ name = "locked-chat", upstream = "fake-chat" }}]
"""
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


@pytest.fixture(scope="module")
def chayns() -> Iterator[RunningChaynsUpstream]:
    with RunningChaynsUpstream(empty_polls=2) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(redis_url: str, chayns: RunningChaynsUpstream) -> Iterator[GatewayProcesses]:
    with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG.format(url=chayns.url)) as processes:
        yield processes


@pytest.fixture
def client(gateway: GatewayProcesses) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.base_url, api_key="k", max_retries=0, timeout=20, _strict_response_validation=True
    ) as sdk:
        yield sdk


def _get(chayns: RunningChaynsUpstream, path: str) -> Any:
    return httpx.get(f"{chayns.url}{path}", timeout=5).json()


def _thread_with(chayns: RunningChaynsUpstream, text: str) -> dict[str, Any]:
    """The fake's one thread in which a message contains ``text``."""
    (thread,) = [t for t in _get(chayns, "/_threads") if any(text in m["text"] for m in t["messages"])]
    return thread


def _posted(thread: dict[str, Any]) -> list[str]:
    """What the gateway posted to the thread: the user member's messages."""
    user = thread["members"][0]["id"]
    return [m["text"] for m in thread["messages"] if m["author"]["id"] == user]


def test_a_plain_chat_opens_a_thread_and_returns_the_agents_answer(
    client: openai.OpenAI, chayns: RunningChaynsUpstream
) -> None:
    question = f"hello {uuid.uuid4().hex[:8]}"
    completion = client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": question}])
    answer = f"reply 1 to: {question}"
    assert completion.choices[0].message.content == answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        math.ceil(len(question) / 4),
        math.ceil(len(answer) / 4),
    )
    thread = _thread_with(chayns, question)
    assert thread["model"] == "fake-chat" and thread["owner"] == "P-token-a" and thread["typeId"] == 8
    assert _posted(thread) == [question]


def test_streaming_delivers_the_answer_and_usage(client: openai.OpenAI) -> None:
    question = f"stream {uuid.uuid4().hex[:8]}"
    stream = client.chat.completions.create(
        model="fake-echo",
        messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[System]\nbe terse\n\n[User]\n{question}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == math.ceil(len(text) / 4)


def test_later_turns_continue_the_thread_with_only_the_new_message(
    client: openai.OpenAI, chayns: RunningChaynsUpstream
) -> None:
    tag = uuid.uuid4().hex[:8]
    messages: list[Any] = [
        {"role": "system", "content": f"You are test {tag}."},
        {"role": "user", "content": "first question"},
    ]
    first = client.chat.completions.create(model="fake-chat", messages=messages).choices[0].message.content
    assert first == f"reply 1 to: [System]\nYou are test {tag}.\n\n[User]\nfirst question"
    before = _get(chayns, "/_stats")
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "second question"}]
    second = client.chat.completions.create(model="fake-chat", messages=messages).choices[0].message.content
    after = _get(chayns, "/_stats")
    assert second == "reply 2 to: second question"
    assert (after["threads_created"], after["messages_posted"]) == (
        before["threads_created"],
        before["messages_posted"] + 1,
    )
    messages += [{"role": "assistant", "content": second}, {"role": "user", "content": "third question"}]
    third = client.chat.completions.create(model="fake-chat", messages=messages).choices[0].message.content
    assert third == "reply 3 to: third question"
    thread = _thread_with(chayns, f"You are test {tag}.")
    assert _posted(thread)[1:] == ["second question", "third question"]


def test_an_edited_history_starts_a_new_thread(client: openai.OpenAI, chayns: RunningChaynsUpstream) -> None:
    tag = uuid.uuid4().hex[:8]
    first = [{"role": "user", "content": f"original {tag}"}]
    reply = client.chat.completions.create(model="fake-chat", messages=first).choices[0].message.content
    before = _get(chayns, "/_stats")["threads_created"]
    edited: Any = [
        {"role": "user", "content": f"rewritten {tag}"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "next"},
    ]
    answer = client.chat.completions.create(model="fake-chat", messages=edited).choices[0].message.content
    assert answer == f"reply 1 to: [User]\nrewritten {tag}\n\n[Assistant]\n{reply}\n\n[User]\nnext"
    assert _get(chayns, "/_stats")["threads_created"] == before + 1


def test_a_data_url_image_is_uploaded_and_attached(client: openai.OpenAI, chayns: RunningChaynsUpstream) -> None:
    question = f"what is this {uuid.uuid4().hex[:8]}"
    image = "data:image/png;base64," + base64.b64encode(PNG).decode()
    content: Any = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": image}}]
    completion = client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == f"reply 1 to: {question} [images: 1]"
    assert _get(chayns, "/_uploads")[-1] == {"filename": "image.png", "content_type": "image/png", "size": len(PNG)}
    (posted,) = [m for m in _thread_with(chayns, question)["messages"] if m["text"] == question]
    assert len(posted["images"]) == 1 and posted["images"][0]["url"].startswith("https://tsimg.fake/v3/P-token-a/")


def test_responses_api_and_its_follow_up_reuse_the_thread(client: openai.OpenAI, chayns: RunningChaynsUpstream) -> None:
    question = f"responses {uuid.uuid4().hex[:8]}"
    first = client.responses.create(model="fake-chat", input=question)
    assert (first.status, first.output_text) == ("completed", f"reply 1 to: {question}")
    threads = _get(chayns, "/_stats")["threads_created"]
    second = client.responses.create(model="fake-chat", input="and then?", previous_response_id=first.id)
    assert second.output_text == "reply 2 to: and then?"
    assert _get(chayns, "/_stats")["threads_created"] == threads
    assert _posted(_thread_with(chayns, question)) == [question, "and then?"]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_go_through_the_bridge_and_results_continue_the_thread(
    client: openai.OpenAI, chayns: RunningChaynsUpstream, stream: bool
) -> None:
    ask: list[Any] = [{"role": "user", "content": f"weather in Paris? {uuid.uuid4().hex[:8]}"}]
    if stream:
        with client.chat.completions.stream(model="fake-xml", messages=ask, tools=[WEATHER_TOOL]) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(model="fake-xml", messages=ask, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and (choice.message.content or "").strip() == "Checking."
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    threads = _get(chayns, "/_stats")["threads_created"]
    followed = [
        *ask,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    final = client.chat.completions.create(model="fake-xml", messages=followed, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "The weather is fine."
    assert _get(chayns, "/_stats")["threads_created"] == threads
    results = _posted(_thread_with(chayns, ask[0]["content"]))[-1]
    assert results.startswith("<function_results>") and "sunny, 21 C" in results


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("fake-broken", 502, "upstream_500"),
        ("fake-silent", 504, "upstream_timeout"),
        ("gone-model", 502, "upstream_model_missing"),
        ("locked-chat", 502, "upstream_401"),
    ],
)
def test_upstream_failures_map_to_gateway_errors(client: openai.OpenAI, model: str, status: int, code: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == status
    assert caught.value.code == code
