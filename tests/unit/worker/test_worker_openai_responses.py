"""The Responses API provider against httpx.MockTransport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from shared.config import Account, ResponsesChannel
from shared.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamTimeout
from shared.events import Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage
from shared.generation import (
    FunctionTool,
    GenerationRequest,
    ImagePart,
    Message,
    Sampling,
    TextPart,
    ToolCall,
    ToolChoice,
)
from worker.providers import ProviderOutput, UpstreamCall
from worker.providers.openai_responses import OpenAIResponsesProvider

Handler = Callable[[httpx.Request], httpx.Response]

USAGE = {
    "input_tokens": 7,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 12,
}


def _frame(event: dict[str, Any], number: int) -> bytes:
    data = msgspec.json.encode({**event, "sequence_number": number})
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + data + b"\n\n"


def _sse(*events: dict[str, Any], tail: bytes = b"") -> httpx.Response:
    body = b"".join(_frame(event, number) for number, event in enumerate(events)) + tail
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream; charset=utf-8"})


def _response(status: str, output: list[Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "output": output or [], **fields}


def _created() -> list[dict[str, Any]]:
    return [
        {"type": "response.created", "response": _response("in_progress")},
        {"type": "response.in_progress", "response": _response("in_progress")},
    ]


def _message_events(index: int, *pieces: str) -> list[dict[str, Any]]:
    item_id = f"msg_{index}"
    where = {"item_id": item_id, "output_index": index, "content_index": 0}
    item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    text = "".join(pieces)
    part = {"type": "output_text", "text": text, "annotations": []}
    done = {**item, "status": "completed", "content": [part]}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []} for piece in pieces),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]


def _call_events(index: int, call_id: str, name: str, *fragments: str) -> list[dict[str, Any]]:
    item_id = f"fc_{index}"
    item = {"id": item_id, "type": "function_call", "status": "in_progress", "call_id": call_id, "name": name}
    arguments = "".join(fragments)
    return [
        {"type": "response.output_item.added", "output_index": index, "item": {**item, "arguments": ""}},
        *(
            {"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": index, "delta": f}
            for f in fragments
        ),
        {
            "type": "response.function_call_arguments.done",
            "item_id": item_id,
            "output_index": index,
            "arguments": arguments,
        },
        {"type": "response.output_item.done", "output_index": index, "item": {**item, "arguments": arguments}},
    ]


def _completed(**fields: Any) -> dict[str, Any]:
    return {"type": "response.completed", "response": _response("completed", usage=USAGE, **fields)}


def _channel(**fields: Any) -> ResponsesChannel:
    defaults: dict[str, Any] = {"name": "up", "base_url": "http://up/v1/", "models": ["m"], "api_key": "sk"}
    return ResponsesChannel(**(defaults | fields))


def _provider(handler: Handler, channel: ResponsesChannel | None = None) -> OpenAIResponsesProvider:
    return OpenAIResponsesProvider(channel or _channel(), transport=httpx.MockTransport(handler))


def _request(**kwargs: object) -> GenerationRequest:
    fields: dict[str, object] = {"messages": [Message("user", [TextPart("hi")])], **kwargs}
    return GenerationRequest(id="g", request_id="req_1", model="alias", reply_to="c", created=1, **fields)  # type: ignore[arg-type]


async def _collect(
    provider: OpenAIResponsesProvider, request: GenerationRequest | None = None, key: str | None = "sk"
) -> list[ProviderOutput]:
    call = UpstreamCall(request or _request(), "upstream-model", Account("a", key))
    return [output async for output in provider.stream(call)]


async def _sent(request: GenerationRequest, key: str | None = "sk", **channel: Any) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return _sse(*_message_events(0, "x"), _completed())

    await _collect(_provider(handler, _channel(**channel)), request, key)
    return seen[0]


# --- the request -------------------------------------------------------------------------------------


async def test_request_translates_history_tools_and_sampling() -> None:
    request = _request(
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look: "), ImagePart("https://img/a.png", "low"), ImagePart("data:x")]),
            Message("assistant", [TextPart("checking")], tool_calls=[ToolCall("call_1", "f", '{"a":1}')]),
            Message("tool", [TextPart("result")], tool_call_id="call_1"),
            Message("assistant", [], tool_calls=[ToolCall("call_2", "g", "{}")]),
            Message("tool", [TextPart("more")], tool_call_id="call_2"),
            Message("system", [TextPart("and polite")]),
        ],
        tools=[
            FunctionTool("f", "does f", msgspec.Raw(b'{"type":"object"}')),
            FunctionTool("g", None, strict=True),
        ],
        tool_choice=ToolChoice("function", "f"),
        sampling=Sampling(
            temperature=0.5,
            top_p=0.9,
            max_output_tokens=100,
            stop=["END"],
            seed=3,
            presence_penalty=0.1,
            reasoning_effort="low",
            parallel_tool_calls=False,
            user="u1",
        ),
    )
    sent = await _sent(request, headers={"x-extra": "yes"})
    assert str(sent.url) == "http://up/v1/responses"
    assert sent.headers["authorization"] == "Bearer sk"
    assert (sent.headers["x-request-id"], sent.headers["x-extra"]) == ("req_1", "yes")
    body = msgspec.json.decode(sent.content)
    assert body == {
        "model": "upstream-model",
        "stream": True,
        "store": False,
        "instructions": "be brief\n\nand polite",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look: "},
                    {"type": "input_image", "image_url": "https://img/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:x", "detail": "auto"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "checking", "annotations": []}],
            },
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "result"},
            {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_2", "output": "more"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "f",
                "parameters": {"type": "object"},
                "strict": False,
                "description": "does f",
            },
            {"type": "function", "name": "g", "parameters": {"type": "object", "properties": {}}, "strict": True},
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 100,
        "reasoning": {"effort": "low"},
        "user": "u1",
    }


async def test_minimal_request_sends_only_what_was_asked() -> None:
    sent = await _sent(_request(sampling=Sampling(parallel_tool_calls=True)), key=None)
    assert "authorization" not in sent.headers
    assert msgspec.json.decode(sent.content) == {
        "model": "upstream-model",
        "stream": True,
        "store": False,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    }


@pytest.mark.parametrize("mode", ["none", "auto", "required"])
async def test_tool_choice_modes(mode: str) -> None:
    request = _request(tools=[FunctionTool("f")], tool_choice=ToolChoice(mode))  # type: ignore[arg-type]
    assert msgspec.json.decode((await _sent(request)).content)["tool_choice"] == mode


@pytest.mark.parametrize(
    ("response_format", "text"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
            {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}},
        ),
        ({"type": "json_object"}, {"format": {"type": "json_object"}}),
        ({"type": "text"}, None),
    ],
)
async def test_response_format_becomes_text_format(response_format: object, text: object) -> None:
    request = _request(sampling=Sampling(response_format=msgspec.Raw(msgspec.json.encode(response_format))))
    assert msgspec.json.decode((await _sent(request)).content).get("text") == text


@pytest.mark.parametrize("response_format", [b'{"type":"grammar"}', b'{"type":"json_schema"}', b'"json"'])
async def test_unusable_response_format_is_a_client_error_before_any_call(response_format: bytes) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return _sse(_completed())

    request = _request(sampling=Sampling(response_format=msgspec.Raw(response_format)))
    with pytest.raises(InvalidRequest) as caught:
        await _collect(_provider(handler), request)
    assert caught.value.param == "response_format" and not calls


# --- the stream ----------------------------------------------------------------------------------------


async def test_text_stream_with_usage() -> None:
    message = _message_events(0, "Hel", "lo", "!")
    # The final Response repeats the output; what was streamed is not sent twice.
    provider = _provider(lambda _: _sse(*_created(), *message, _completed(output=[message[-1]["item"]])))
    assert await _collect(provider) == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta("!"),
        Usage(input_tokens=7, output_tokens=5, cached_tokens=3, reasoning_tokens=2),
        Finished("stop"),
    ]


async def test_tool_calls_are_numbered_in_order_and_reasoning_is_skipped() -> None:
    reasoning = {"id": "rs_0", "type": "reasoning", "summary": []}
    events = [
        *_created(),
        {"type": "response.output_item.added", "output_index": 0, "item": reasoning},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_0", "output_index": 0, "delta": {"x": 1}},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        *_message_events(1, "Let me check."),
        *_call_events(2, "call_a", "get_weather", '{"city"', ': "Paris"}'),
        *_call_events(3, "call_b", "get_time", "{}"),
        _completed(),
    ]
    assert await _collect(_provider(lambda _: _sse(*events))) == [
        TextDelta("Let me check."),
        ToolCallStarted(0, "call_a", "get_weather"),
        ToolCallDelta(0, '{"city"'),
        ToolCallDelta(0, ': "Paris"}'),
        ToolCallStarted(1, "call_b", "get_time"),
        ToolCallDelta(1, "{}"),
        Usage(7, 5, 3, 2),
        Finished("tool_calls"),
    ]


async def test_interleaved_argument_deltas_find_their_call() -> None:
    first, second = _call_events(0, "c0", "f", "{}"), _call_events(1, "c1", "g", "{}")
    events = [first[0], second[0]]
    events += [
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": "[1]"},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_0", "output_index": 0, "delta": "[0]"},
        _completed(),
    ]
    assert await _collect(_provider(lambda _: _sse(*events))) == [
        ToolCallStarted(0, "c0", "f"),
        ToolCallStarted(1, "c1", "g"),
        ToolCallDelta(1, "[1]"),
        ToolCallDelta(0, "[0]"),
        Usage(7, 5, 3, 2),
        Finished("tool_calls"),
    ]


async def test_whole_parts_without_deltas_are_still_emitted() -> None:
    message = [e for e in _message_events(0, "whole text") if e["type"] != "response.output_text.delta"]
    call = [e for e in _call_events(1, "c0", "f", '{"a": 1}') if "delta" not in e["type"]]
    assert await _collect(_provider(lambda _: _sse(*message, *call, _completed()))) == [
        TextDelta("whole text"),
        ToolCallStarted(0, "c0", "f"),
        ToolCallDelta(0, '{"a": 1}'),
        Usage(7, 5, 3, 2),
        Finished("tool_calls"),
    ]


async def test_only_a_terminal_event_still_yields_its_output() -> None:
    output = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "all at once"}]},
    ]
    assert await _collect(_provider(lambda _: _sse(*_created(), _completed(output=output)))) == [
        TextDelta("all at once"),
        Usage(7, 5, 3, 2),
        Finished("stop"),
    ]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), (None, "length")],
)
async def test_incomplete_response(reason: str | None, finish: str) -> None:
    details = {"reason": reason} if reason else None
    incomplete = _response("incomplete", usage=USAGE, incomplete_details=details)
    provider = _provider(
        lambda _: _sse(*_message_events(0, "cut"), {"type": "response.incomplete", "response": incomplete})
    )
    assert await _collect(provider) == [TextDelta("cut"), Usage(7, 5, 3, 2), Finished(finish)]


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        ({"code": "server_error", "message": "The model broke."}, UpstreamError, 502),
        ({"code": "rate_limit_exceeded", "message": "Slow down."}, RateLimited, 429),
        ({"code": "context_length_exceeded", "message": "Too long."}, InvalidRequest, 400),
    ],
)
async def test_failed_response_after_output(error: dict[str, str], kind: type[GatewayError], status: int) -> None:
    failed = {"type": "response.failed", "response": _response("failed", error=error)}
    received: list[ProviderOutput] = []
    provider = _provider(lambda _: _sse(*_created(), *_message_events(0, "partial")[:3], failed))
    with pytest.raises(kind) as caught:
        async for output in provider.stream(UpstreamCall(_request(), "m", Account("a", "sk"))):
            received.append(output)
    assert received == [TextDelta("partial")]
    assert caught.value.status == status and error["message"] in caught.value.message


@pytest.mark.parametrize(
    "event",
    [
        {"type": "error", "code": "rate_limit_exceeded", "message": "Too many requests.", "param": None},
        {
            "type": "error",
            "error": {"type": "requests", "code": "rate_limit_exceeded", "message": "Too many requests."},
        },
    ],
)
async def test_error_event_rate_limit(event: dict[str, Any]) -> None:
    with pytest.raises(RateLimited, match="Too many requests"):
        await _collect(_provider(lambda _: _sse(*_created(), event)))


async def test_error_event_without_code_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="overloaded") as caught:
        await _collect(_provider(lambda _: _sse({"type": "error", "message": "overloaded"})))
    assert caught.value.code == "upstream_stream_error"


async def test_stream_ending_without_terminal_event_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="before finishing") as caught:
        await _collect(_provider(lambda _: _sse(*_created(), *_message_events(0, "x"))))
    assert caught.value.code == "upstream_incomplete"


async def test_done_marker_without_terminal_event_is_an_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _collect(_provider(lambda _: _sse(*_message_events(0, "x"), tail=b"data: [DONE]\n\n")))
    assert caught.value.code == "upstream_incomplete"


async def test_nothing_after_the_terminal_event_is_read() -> None:
    provider = _provider(lambda _: _sse(*_message_events(0, "x"), _completed(), tail=b"data: {broken\n\n"))
    assert await _collect(provider) == [TextDelta("x"), Usage(7, 5, 3, 2), Finished("stop")]


async def test_sse_framing_multiline_data_and_missing_final_blank_line() -> None:
    delta = b'data: {"type": "response.output_text.delta",\ndata: "output_index": 0, "delta": "a"}\n\n'
    last = b"event: response.completed\ndata: " + msgspec.json.encode(_completed())
    body = b": keep-alive\n\n" + delta + last
    response = httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    assert await _collect(_provider(lambda _: response)) == [TextDelta("a"), Usage(7, 5, 3, 2), Finished("stop")]


async def test_unreadable_event_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="unreadable"):
        await _collect(_provider(lambda _: _sse({"type": "response.output_text.delta", "delta": 5})))


async def test_cancelling_closes_the_upstream_response() -> None:
    closed: list[bool] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for number, event in enumerate(_message_events(0, "a", "b", "c")):
                yield _frame(event, number)

        async def aclose(self) -> None:
            closed.append(True)

    provider = _provider(lambda _: httpx.Response(200, stream=Body(), headers={"content-type": "text/event-stream"}))
    outputs = provider.stream(UpstreamCall(_request(), "m", Account("a", "sk")))
    assert await anext(outputs) == TextDelta("a")
    await outputs.aclose()
    assert closed == [True]


# --- plain JSON and HTTP failures -------------------------------------------------------------------------


async def test_plain_json_reply_is_translated() -> None:
    output = [
        {"id": "rs_0", "type": "reasoning", "summary": []},
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "whole", "annotations": []}],
        },
        {"id": "fc_2", "type": "function_call", "call_id": "call_x", "name": "f", "arguments": '{"a": 1}'},
    ]
    provider = _provider(lambda _: httpx.Response(200, json=_response("completed", output, usage=USAGE)))
    assert await _collect(provider) == [
        TextDelta("whole"),
        ToolCallStarted(0, "call_x", "f"),
        ToolCallDelta(0, '{"a": 1}'),
        Usage(7, 5, 3, 2),
        Finished("tool_calls"),
    ]


async def test_plain_json_failed_reply_is_an_error() -> None:
    body = _response("failed", error={"code": "server_error", "message": "boom"})
    with pytest.raises(UpstreamError, match="boom"):
        await _collect(_provider(lambda _: httpx.Response(200, json=body)))


async def test_plain_json_unfinished_reply_is_an_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _collect(_provider(lambda _: httpx.Response(200, json=_response("in_progress"))))
    assert caught.value.code == "upstream_incomplete"


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
    body = {"error": {"message": "upstream says no", "type": "x", "param": "input", "code": "c"}}
    provider = _provider(lambda _: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(kind) as caught:
        await _collect(provider)
    assert caught.value.status == expected_status
    if status == 400:
        assert (caught.value.message, caught.value.code, caught.value.param) == ("upstream says no", "c", "input")
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
