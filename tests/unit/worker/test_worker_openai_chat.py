"""The OpenAI-compatible provider against httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import msgspec
import pytest

from shared.config import Account, OpenAIChannel
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamTimeout
from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import FunctionTool, GenerationRequest, Message, Sampling, TextPart, ToolCall, ToolChoice
from worker.providers import ProviderOutput, UpstreamCall
from worker.providers.openai_chat import OpenAIChatProvider

Handler = Callable[[httpx.Request], httpx.Response]


def _sse(*chunks: object, done: bool = True) -> httpx.Response:
    body = b"".join(b"data: " + msgspec.json.encode(c) + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n" if done else b""
    )
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def _provider(handler: Handler) -> OpenAIChatProvider:
    channel = OpenAIChannel(name="up", base_url="http://up/v1", models=["m"], api_key="sk")
    return OpenAIChatProvider(channel, transport=httpx.MockTransport(handler))


def _request(**kwargs: object) -> GenerationRequest:
    fields: dict[str, object] = {"messages": [Message("user", [TextPart("hi")])], **kwargs}
    return GenerationRequest(id="g", request_id="req_1", model="alias", reply_to="c", created=1, **fields)  # type: ignore[arg-type]


async def _collect(provider: OpenAIChatProvider, request: GenerationRequest | None = None) -> list[ProviderOutput]:
    return [
        output
        async for output in provider.stream(UpstreamCall(request or _request(), "upstream-model", Account("a", "sk")))
    ]


def _choice(delta: object, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_text_stream_with_usage() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}
    provider = _provider(
        lambda _: _sse(
            _choice({"role": "assistant", "content": ""}),
            _choice({"content": "Hel"}),
            _choice({"content": "lo"}),
            _choice({}, "stop"),
            {"choices": [], "usage": usage},
        )
    )
    assert await _collect(provider) == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(input_tokens=5, output_tokens=2, cached_tokens=1),
        Finished("stop"),
    ]


async def test_tool_call_deltas() -> None:
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    provider = _provider(
        lambda _: _sse(
            _choice({"tool_calls": [first]}),
            _choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
            _choice({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            _choice({}, "tool_calls"),
        )
    )
    assert await _collect(provider) == [
        ToolCallStarted(0, "call_1", "f"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ": 1}"),
        Finished("tool_calls"),
    ]


async def test_upstream_request_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _sse(_choice({"content": "x"}, "stop"))

    request = _request(
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("hi")]),
            Message("assistant", [], tool_calls=[ToolCall("call_1", "f", "{}")]),
            Message("tool", [TextPart("result")], tool_call_id="call_1"),
        ],
        tools=[FunctionTool("f", "does f", msgspec.Raw(b'{"type":"object"}'))],
        tool_choice=ToolChoice("function", "f"),
        sampling=Sampling(temperature=0.5, max_output_tokens=10, stop=["END"]),
    )
    await _collect(_provider(handler), request)
    body = msgspec.json.decode(seen[0].content)
    assert seen[0].headers["authorization"] == "Bearer sk"
    assert seen[0].headers["x-request-id"] == "req_1"
    assert body["model"] == "upstream-model"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{}"}, "type": "function"}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "result"},
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "description": "does f", "parameters": {"type": "object"}}}
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert (body["temperature"], body["max_completion_tokens"], body["stop"]) == (0.5, 10, ["END"])
    assert "top_p" not in body and "seed" not in body


@pytest.mark.parametrize(
    ("status", "headers", "kind", "expected_status"),
    [
        (400, {}, InvalidRequest, 400),
        (401, {}, UpstreamError, 502),
        (429, {"retry-after": "3"}, RateLimited, 429),
        (500, {}, UpstreamError, 502),
        (504, {}, UpstreamTimeout, 504),
    ],
)
async def test_error_replies(
    status: int, headers: dict[str, str], kind: type[GatewayError], expected_status: int
) -> None:
    body = {"error": {"message": "upstream says no", "type": "x", "code": "c"}}
    provider = _provider(lambda _: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(kind) as caught:
        await _collect(provider)
    assert caught.value.status == expected_status
    if status == 400:
        assert caught.value.message == "upstream says no" and caught.value.code == "c"
    if status == 429:
        assert caught.value.retry_after == 3


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("refused"), 502, "upstream_unreachable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    ],
)
async def test_transport_failures(exc: Exception, status: int, code: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(GatewayError) as caught:
        await _collect(_provider(handler))
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_stream_ending_without_finish_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="before finishing"):
        await _collect(_provider(lambda _: _sse(_choice({"content": "x"}), done=False)))


async def test_error_chunk_mid_stream() -> None:
    with pytest.raises(UpstreamError, match="overloaded"):
        await _collect(_provider(lambda _: _sse(_choice({"content": "x"}), {"error": {"message": "overloaded"}})))


async def test_plain_json_reply_is_accepted() -> None:
    reply = {
        "choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    provider = _provider(lambda _: httpx.Response(200, json=reply))
    assert await _collect(provider) == [TextDelta("whole"), Usage(1, 1), Finished("stop")]
