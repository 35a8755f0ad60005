"""Generation events → Messages SSE events and message objects: the stream's grammar, and agreement of both."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.messages.output import MessageBuilder, MessageStreamWriter
from shared.errors import ErrorInfo, GatewayError
from shared.events import (
    Failed,
    Finished,
    GenerationEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)

_text = st.text(min_size=1, max_size=5)


@st.composite
def _generations(draw: st.DrawFn) -> list[GenerationEvent]:
    """Events as workers send them: text, thinking (signed or not, or redacted), tool calls with argument
    fragments right after their start, usage, and a terminal event."""
    events: list[GenerationEvent] = []
    calls = 0
    for kind in draw(st.lists(st.sampled_from(["text", "think", "sign", "redacted", "call"]), max_size=12)):
        if kind == "text":
            events.append(TextDelta(draw(_text)))
        elif kind == "think":
            events.append(ThinkingDelta(draw(_text)))
        elif kind == "sign":
            events.append(ThinkingDelta(signature=draw(_text)))
        elif kind == "redacted":
            events.append(ThinkingDelta(redacted=draw(_text)))
        else:
            events.append(ToolCallStarted(calls, f"toolu_{calls}", "tool"))
            events += [ToolCallDelta(calls, piece) for piece in draw(st.sampled_from([[], ['{"a"', ": 1}"]]))]
            calls += 1
    if draw(st.booleans()):
        events.append(Usage(draw(st.integers(0, 50)) + 10, draw(st.integers(0, 50)), 3, 0, 2))
    if draw(st.booleans()):
        events.append(Finished(draw(st.sampled_from(["stop", "length", "tool_calls"]))))
    else:
        events.append(Failed(ErrorInfo(502, "upstream_error", "broke")))
    return events


def _parse(stream: bytes) -> list[tuple[str, Any]]:
    frames = []
    for chunk in stream.decode().split("\n\n"):
        if chunk:
            name_line, data_line = chunk.split("\n")
            frames.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return frames


def _stream(events: list[GenerationEvent]) -> list[tuple[str, Any]]:
    writer = MessageStreamWriter(message_id="msg_1", model="m")
    out = writer.opening() + b"".join(writer.feed(event) for event in events)
    assert writer.done
    return _parse(out)


def _content(frames: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The message's content as a client accumulates it from the stream."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for name, data in frames:
        if name == "content_block_start":
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    return blocks


@given(_generations())
def test_the_stream_is_well_formed(events: list[GenerationEvent]) -> None:
    frames = _stream(events)
    names = [name for name, _ in frames]
    assert all(name == data["type"] for name, data in frames)
    assert names[0] == "message_start"
    failed = isinstance(events[-1], Failed)
    assert names[-1] == ("error" if failed else "message_stop")
    if not failed:
        assert names[-2] == "message_delta" and names.count("message_delta") == 1
    open_index: int | None = None
    next_index = 0
    for name, data in frames:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name in ("message_delta", "message_stop", "error"):
            assert open_index is None
    assert next_index == sum(1 for name in names if name == "content_block_stop")


@given(_generations())
def test_the_message_object_is_what_the_stream_adds_up_to(events: list[GenerationEvent]) -> None:
    frames = _stream(events)
    builder = MessageBuilder(message_id="msg_1", model="m")
    if isinstance(events[-1], Failed):
        with pytest.raises(GatewayError):
            for event in events:
                builder.feed(event)
        return
    message = next(m for event in events if (m := builder.feed(event)) is not None)
    as_json = json.loads(msgspec.json.encode(message))
    assert as_json["content"] == _content(frames)
    final = frames[-2][1]
    assert final["delta"]["stop_reason"] == as_json["stop_reason"]
    assert final["usage"] == as_json["usage"]


def test_stop_reasons_and_usage_follow_anthropics_counting() -> None:
    builder = MessageBuilder(message_id="msg_1", model="m")
    builder.feed(TextDelta("hi"))
    builder.feed(Usage(input_tokens=20, output_tokens=5, cached_tokens=4, cache_creation_tokens=6))
    message = builder.feed(Finished("stop", stop_sequence="END"))
    assert message is not None
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (10, 4, 6)
    for reason, expected in (("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")):
        assert MessageBuilder(message_id="m", model="m").feed(Finished(reason)).stop_reason == expected  # type: ignore[union-attr]
    with_call = MessageBuilder(message_id="m", model="m")
    with_call.feed(ToolCallStarted(0, "toolu_1", "read"))
    with_call.feed(ToolCallDelta(0, '{"path": "a'))  # cut off: the input still has to be an object
    message = with_call.feed(Finished("stop"))
    assert message is not None and message.stop_reason == "tool_use"
    assert bytes(message.content[0].input) == b"{}"  # type: ignore[union-attr]
