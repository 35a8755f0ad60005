"""The Anthropic Messages provider against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from shared.config import Account, AnthropicChannel
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamTimeout
from shared.events import Finished, TextDelta, ThinkingDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import (
    CacheControl,
    FunctionTool,
    GenerationRequest,
    ImagePart,
    Message,
    Sampling,
    TextPart,
    Thinking,
    ToolCall,
    ToolChoice,
)
from worker.providers import ProviderOutput, UpstreamCall
from worker.providers.anthropic import AnthropicProvider
from worker.registry import default_registry

Handler = Callable[[httpx.Request], httpx.Response]
Event = dict[str, Any]


def _sse(*events: Event) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + msgspec.json.encode(e) + b"\n\n" for e in events)


def _reply(*events: Event) -> httpx.Response:
    return httpx.Response(200, content=_sse(*events), headers={"content-type": "text/event-stream"})


def _start(input_tokens: int = 10, cache_read: int = 0, cache_creation: int = 0) -> Event:
    usage = {
        "input_tokens": input_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
        "output_tokens": 1,
    }
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m", "usage": usage}
    return {"type": "message_start", "message": message}


def _text(index: int, *pieces: str) -> list[Event]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}} for p in pieces),
        {"type": "content_block_stop", "index": index},
    ]


def _tool(index: int, call_id: str, name: str, *fragments: str) -> list[Event]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *(
            {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": f}}
            for f in fragments
        ),
        {"type": "content_block_stop", "index": index},
    ]


def _end(stop_reason: str = "end_turn", output_tokens: int = 5) -> list[Event]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}},
        {"type": "message_stop"},
    ]


def _channel(**kwargs: Any) -> AnthropicChannel:
    return AnthropicChannel(name="claude", base_url="http://up", models=["m"], api_key="sk-ant", **kwargs)


def _provider(handler: Handler, **kwargs: Any) -> AnthropicProvider:
    return AnthropicProvider(_channel(**kwargs), transport=httpx.MockTransport(handler))


def _request(**kwargs: Any) -> GenerationRequest:
    fields: dict[str, Any] = {"messages": [Message("user", [TextPart("hi")])], **kwargs}
    return GenerationRequest(id="g", request_id="req_1", model="alias", reply_to="c", created=1, **fields)


async def _collect(provider: AnthropicProvider, request: GenerationRequest | None = None) -> list[ProviderOutput]:
    call = UpstreamCall(request or _request(), "claude-model", Account("a", "sk-ant"))
    return [output async for output in provider.stream(call)]


async def _sent_body(request: GenerationRequest, **channel: Any) -> Any:
    seen: list[httpx.Request] = []

    def handler(upstream: httpx.Request) -> httpx.Response:
        seen.append(upstream)
        return _reply(_start(), *_text(0, "x"), *_end())

    await _collect(_provider(handler, **channel), request)
    return msgspec.json.decode(seen[0].content)


def test_the_registry_serves_anthropic_channels() -> None:
    assert isinstance(default_registry().create(_channel()), AnthropicProvider)


async def test_text_stream_with_usage() -> None:
    provider = _provider(
        lambda _: _reply(
            _start(input_tokens=10, cache_read=3, cache_creation=2),
            {"type": "ping"},
            *_text(0, "Hel", "lo"),
            *_end(output_tokens=7),
        )
    )
    assert await _collect(provider) == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(input_tokens=15, output_tokens=7, cached_tokens=3, cache_creation_tokens=2),
        Finished("stop"),
    ]


async def test_tool_calls_are_numbered_and_thinking_passes_with_its_signature() -> None:
    thinking = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "secret"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
    ]
    provider = _provider(
        lambda _: _reply(
            _start(),
            *thinking,
            *_text(1, "Checking."),
            *_tool(2, "toolu_a", "weather", "", '{"city"', ': "Paris"}'),
            *_tool(3, "toolu_b", "time", '{"tz": "CET"}'),
            *_end("tool_use", 30),
        )
    )
    assert await _collect(provider) == [
        ThinkingDelta("secret"),
        ThinkingDelta(signature="sig"),
        TextDelta("Checking."),
        ToolCallStarted(0, "toolu_a", "weather"),
        ToolCallDelta(0, '{"city"'),
        ToolCallDelta(0, ': "Paris"}'),
        ToolCallStarted(1, "toolu_b", "time"),
        ToolCallDelta(1, '{"tz": "CET"}'),
        Usage(input_tokens=10, output_tokens=30),
        Finished("tool_calls"),
    ]


async def test_cache_marks_thinking_and_failed_tool_results_reach_the_upstream() -> None:
    ephemeral = CacheControl()
    request = _request(
        messages=[
            Message("system", [TextPart("You are a coder.", ephemeral), TextPart("Be brief.")]),
            Message("user", [TextPart("Fix it", ephemeral)]),
            Message(
                "assistant",
                [TextPart("Reading.")],
                tool_calls=[ToolCall("toolu_1", "read", "{}")],
                thinking=[Thinking("plan", "sig"), Thinking("unsigned"), Thinking(redacted="xyz")],
            ),
            Message("tool", [TextPart("no such file")], tool_call_id="toolu_1", is_error=True),
        ],
        sampling=Sampling(top_k=5, thinking_budget=2048),
    )
    body = await _sent_body(request)
    assert body["system"] == [
        {"type": "text", "text": "You are a coder.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
    ]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Fix it", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"][1]["content"][:3] == [
        {"type": "thinking", "thinking": "plan", "signature": "sig"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "text", "text": "Reading."},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such file", "is_error": True}
    ]
    assert (body["top_k"], body["thinking"]) == (5, {"type": "enabled", "budget_tokens": 2048})


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    outputs = await _collect(_provider(lambda _: _reply(_start(), *_text(0, "x"), *_end(stop_reason))))
    assert outputs[-1] == Finished(finish_reason)


async def test_unknown_events_are_skipped() -> None:
    body = _sse(_start(), *_text(0, "a")) + b'event: future_event\ndata: {"type": "future_event"}\n\n' + _sse(*_end())
    provider = _provider(lambda _: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    assert await _collect(provider) == [TextDelta("a"), Usage(10, 5), Finished("stop")]


async def test_request_headers_and_url() -> None:
    seen: list[httpx.Request] = []

    def handler(upstream: httpx.Request) -> httpx.Response:
        seen.append(upstream)
        return _reply(_start(), *_text(0, "x"), *_end())

    provider = _provider(handler, anthropic_version="2099-01-01", headers={"anthropic-beta": "feature-x"})
    await _collect(provider)
    sent = seen[0]
    assert sent.method == "POST" and str(sent.url) == "http://up/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant"
    assert "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2099-01-01"
    assert sent.headers["anthropic-beta"] == "feature-x"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == "req_1"


async def test_conversation_translation() -> None:
    request = _request(
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look"), ImagePart("data:image/png;base64,iVBORw0K")]),
            Message("user", [ImagePart("https://img.example/cat.jpg")]),
            Message("assistant", [TextPart("")], tool_calls=[ToolCall("call_1", "f", '{"a": 1}')]),
            Message("assistant", [], tool_calls=[ToolCall("call_2", "g", "")]),
            Message("tool", [TextPart("one")], tool_call_id="call_1"),
            Message("tool", [TextPart("two")], tool_call_id="call_2"),
            Message("user", [TextPart("thanks")]),
            Message("system", [TextPart("really brief")]),
            Message("assistant", [TextPart("ok")]),
        ]
    )
    body = await _sent_body(request)
    assert body["system"] == "be brief\n\nreally brief"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                {"type": "image", "source": {"type": "url", "url": "https://img.example/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "two"},
                {"type": "text", "text": "thanks"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
    ]
    assert body["model"] == "claude-model" and body["stream"] is True and body["max_tokens"] == 4096
    for absent in ("tools", "tool_choice", "temperature", "top_p", "stop_sequences", "metadata"):
        assert absent not in body


async def test_tool_results_open_their_user_turn() -> None:
    request = _request(
        messages=[
            Message("user", [TextPart("go")]),
            Message("assistant", [], tool_calls=[ToolCall("c1", "f", "{}")]),
            Message("user", [TextPart("also this")]),
            Message("tool", [TextPart("done")], tool_call_id="c1"),
        ]
    )
    body = await _sent_body(request)
    assert [block["type"] for block in body["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["", "{not json", "[1, 2]", '"text"'])
async def test_arguments_that_are_not_an_object_become_empty(arguments: str) -> None:
    request = _request(
        messages=[
            Message("user", [TextPart("go")]),
            Message("assistant", [], tool_calls=[ToolCall("c1", "f", arguments)]),
            Message("tool", [TextPart("done")], tool_call_id="c1"),
        ]
    )
    body = await _sent_body(request)
    assert body["messages"][1]["content"][0]["input"] == {}


async def test_ids_with_foreign_characters_stay_paired() -> None:
    request = _request(
        messages=[
            Message("user", [TextPart("go")]),
            Message("assistant", [], tool_calls=[ToolCall("call:1/x", "f", "{}")]),
            Message("tool", [TextPart("done")], tool_call_id="call:1/x"),
        ]
    )
    body = await _sent_body(request)
    assert body["messages"][1]["content"][0]["id"] == "call_1_x"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_1_x"


async def test_tool_result_with_an_image_keeps_blocks() -> None:
    request = _request(
        messages=[
            Message("user", [TextPart("go")]),
            Message("assistant", [], tool_calls=[ToolCall("c1", "shot", "{}")]),
            Message("tool", [TextPart("here"), ImagePart("https://img/x.png")], tool_call_id="c1"),
        ]
    )
    body = await _sent_body(request)
    assert body["messages"][2]["content"][0]["content"] == [
        {"type": "text", "text": "here"},
        {"type": "image", "source": {"type": "url", "url": "https://img/x.png"}},
    ]


async def test_data_url_without_base64_is_encoded() -> None:
    request = _request(messages=[Message("user", [ImagePart("data:image/svg+xml,%3Csvg%2F%3E")])])
    body = await _sent_body(request)
    source = body["messages"][0]["content"][0]["source"]
    assert source["media_type"] == "image/svg+xml"
    assert base64.b64decode(source["data"]) == b"<svg/>"


async def test_malformed_data_url_is_the_clients_mistake() -> None:
    request = _request(messages=[Message("user", [ImagePart("data:image/png;base64")])])
    with pytest.raises(InvalidRequest):
        await _collect(_provider(lambda _: _reply()), request)


async def test_tools_and_sampling() -> None:
    request = _request(
        tools=[
            FunctionTool("f", "does f", msgspec.Raw(b'{"type":"object","properties":{"a":{"type":"integer"}}}')),
            FunctionTool("g"),
        ],
        tool_choice=ToolChoice("function", "f"),
        sampling=Sampling(
            temperature=0.5, top_p=0.9, max_output_tokens=100, stop=["END"], user="u-1", parallel_tool_calls=False
        ),
    )
    body = await _sent_body(request)
    assert body["tools"] == [
        {
            "name": "f",
            "description": "does f",
            "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
        {"name": "g", "input_schema": {"type": "object"}},
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 0.9, 100)
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}


async def test_channel_max_tokens_is_the_default() -> None:
    assert (await _sent_body(_request(), max_tokens=321))["max_tokens"] == 321


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("function", "f"), True, {"type": "tool", "name": "f"}),
    ],
)
async def test_tool_choice(choice: ToolChoice | None, parallel: bool | None, expected: Any) -> None:
    request = _request(tools=[FunctionTool("f")], tool_choice=choice, sampling=Sampling(parallel_tool_calls=parallel))
    assert (await _sent_body(request)).get("tool_choice") == expected


def _error_reply(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Handler:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return lambda _: httpx.Response(status, json=body, headers=headers or {})


@pytest.mark.parametrize(
    ("status", "kind", "error_class", "client_status"),
    [
        (400, "invalid_request_error", InvalidRequest, 400),
        (401, "authentication_error", UpstreamError, 502),
        (429, "rate_limit_error", RateLimited, 429),
        (500, "api_error", UpstreamError, 502),
        (529, "overloaded_error", UpstreamError, 502),
    ],
)
async def test_error_replies_keep_the_upstream_message_but_an_auth_failures(
    status: int, kind: str, error_class: type[GatewayError], client_status: int
) -> None:
    provider = _provider(_error_reply(status, kind, "upstream says no", {"retry-after": "3"}))
    with pytest.raises(error_class) as caught:
        await _collect(provider)
    assert caught.value.status == client_status
    # An authentication failure's text is about the gateway's key, and is never passed on.
    assert ("upstream says no" in caught.value.message) is (status != 401)
    if status == 429:
        assert caught.value.retry_after == 3
    if status == 529:
        assert caught.value.code == "upstream_overloaded"


@pytest.mark.parametrize(
    ("kind", "error_class", "code"),
    [
        ("overloaded_error", UpstreamError, "upstream_overloaded"),
        ("rate_limit_error", RateLimited, "rate_limit_exceeded"),
        ("api_error", UpstreamError, "upstream_stream_error"),
    ],
)
async def test_error_events_mid_stream(kind: str, error_class: type[GatewayError], code: str) -> None:
    error = {"type": "error", "error": {"type": kind, "message": "gone wrong"}}
    provider = _provider(lambda _: _reply(_start(), *_text(0, "partial")[:2], error))
    outputs: list[ProviderOutput] = []
    with pytest.raises(error_class) as caught:
        async for output in provider.stream(UpstreamCall(_request(), "m", Account("a", "k"))):
            outputs.append(output)
    assert outputs == [TextDelta("partial")]
    assert caught.value.code == code and "gone wrong" in caught.value.message


async def test_stream_without_message_stop_is_incomplete() -> None:
    provider = _provider(lambda _: _reply(_start(), *_text(0, "x"), *_end()[:1]))
    with pytest.raises(UpstreamError) as caught:
        await _collect(provider)
    assert caught.value.code == "upstream_incomplete"


async def test_unreadable_event_is_an_upstream_error() -> None:
    body = _sse(_start()) + b"event: content_block_delta\ndata: {nope\n\n"
    provider = _provider(lambda _: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    with pytest.raises(UpstreamError, match="unreadable"):
        await _collect(provider)


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [(httpx.ConnectError("refused"), UpstreamError), (httpx.ReadTimeout("slow"), UpstreamTimeout)],
)
async def test_transport_failures(exc: Exception, error_class: type[GatewayError]) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(error_class):
        await _collect(_provider(handler))


class _EndlessBody(httpx.AsyncByteStream):
    """Sends a first delta and then nothing: output must arrive before the body ends."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield _sse(_start(), *_text(0, "first")[:2])
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


async def test_output_streams_and_cancelling_closes_the_response() -> None:
    body = _EndlessBody()
    provider = _provider(lambda _: httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"}))
    stream = provider.stream(UpstreamCall(_request(), "m", Account("a", "k")))
    assert await asyncio.wait_for(anext(stream), 2) == TextDelta("first")
    await stream.aclose()
    assert body.closed


async def test_empty_tool_result_sends_no_content() -> None:
    request = _request(
        messages=[
            Message("user", [TextPart("go")]),
            Message("assistant", [], tool_calls=[ToolCall("c1", "f", "{}")]),
            Message("tool", [], tool_call_id="c1"),
        ]
    )
    body = await _sent_body(request)
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c1"}]
