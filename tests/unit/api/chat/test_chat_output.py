"""Chat chunks and completions byte for byte as clients expect them."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from api.chat.output import ChatCompletionBuilder, ChatStreamWriter
from shared.errors import ErrorInfo, GatewayError
from shared.events import Failed, Finished, TextDelta, ToolCallDelta, ToolCallStarted, Usage


def _frames(data: bytes) -> list[Any]:
    out: list[Any] = []
    for frame in data.split(b"\n\n"):
        if not frame:
            continue
        assert frame.startswith(b"data: ")
        payload = frame[6:]
        out.append("[DONE]" if payload == b"[DONE]" else msgspec.json.decode(payload))
    return out


@pytest.mark.parametrize("include_usage", [True, False])
def test_text_stream(include_usage: bool) -> None:
    writer = ChatStreamWriter(completion_id="chatcmpl-1", model="m", created=7, include_usage=include_usage)
    data = writer.opening() + writer.feed(TextDelta("Hel")) + writer.feed(TextDelta("lo")) + writer.feed(Usage(3, 2))
    assert not writer.done
    data += writer.feed(Finished("stop"))
    assert writer.done
    frames = _frames(data)
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert {c["id"] for c in chunks} == {"chatcmpl-1"} and {c["created"] for c in chunks} == {7}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert [c["choices"][0]["delta"] for c in chunks[1:3]] == [{"content": "Hel"}, {"content": "lo"}]
    assert chunks[3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:3])
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:4])
        assert chunks[4]["choices"] == [] and chunks[4]["usage"]["total_tokens"] == 5
        assert chunks[4]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
        assert len(chunks) == 5
    else:
        assert all("usage" not in c for c in chunks) and len(chunks) == 4


def test_tool_call_stream() -> None:
    writer = ChatStreamWriter(completion_id="c", model="m", created=1, include_usage=False)
    data = (
        writer.feed(ToolCallStarted(0, "call_1", "get_weather"))
        + writer.feed(ToolCallDelta(0, '{"city":'))
        + writer.feed(ToolCallDelta(0, '"Paris"}'))
        + writer.feed(Finished("stop"))
    )
    deltas = [c["choices"][0]["delta"] for c in _frames(data)[:-1]]
    assert deltas[0] == {
        "tool_calls": [
            {"index": 0, "function": {"name": "get_weather", "arguments": ""}, "id": "call_1", "type": "function"}
        ]
    }
    assert deltas[1] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}
    assert _frames(data)[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_failure_mid_stream_is_one_error_frame() -> None:
    writer = ChatStreamWriter(completion_id="c", model="m", created=1, include_usage=True)
    frames = _frames(writer.feed(Failed(ErrorInfo(502, "upstream_error", "boom", "x"))))
    assert frames == [{"error": {"message": "boom", "type": "upstream_error", "param": None, "code": "x"}}]
    assert writer.done


def test_builder_assembles_text_and_tool_calls() -> None:
    builder = ChatCompletionBuilder(completion_id="c", model="m", created=1)
    for event in (TextDelta("a"), TextDelta("b"), Usage(1, 2)):
        assert builder.feed(event) is None
    completion = builder.feed(Finished("length"))
    assert completion is not None
    body = msgspec.json.decode(msgspec.json.encode(completion))
    assert body["choices"][0] == {
        "index": 0,
        "message": {"content": "ab", "role": "assistant", "refusal": None, "annotations": []},
        "finish_reason": "length",
        "logprobs": None,
    }
    assert body["usage"]["completion_tokens"] == 2 and body["object"] == "chat.completion"

    tools = ChatCompletionBuilder(completion_id="c", model="m", created=1)
    tools.feed(TextDelta("\n\n"))  # whitespace beside a call is no content
    tools.feed(ToolCallStarted(0, "call_1", "f"))
    tools.feed(ToolCallDelta(0, "{}"))
    result = tools.feed(Finished("stop"))
    assert result is not None
    message = msgspec.json.decode(msgspec.json.encode(result))["choices"][0]
    assert message["message"]["content"] is None and message["finish_reason"] == "tool_calls"
    assert message["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"name": "f", "arguments": "{}"}, "type": "function"}
    ]


def test_builder_raises_the_failure() -> None:
    builder = ChatCompletionBuilder(completion_id="c", model="m", created=1)
    with pytest.raises(GatewayError) as caught:
        builder.feed(Failed(ErrorInfo(504, "timeout", "slow")))
    assert caught.value.status == 504
