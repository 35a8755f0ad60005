"""The projection of generation events onto the Responses API: sequence, items, terminal states."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from api.responses.objects import ResponseShell, StreamEvent, encode_sse
from api.responses.projection import ResponseProjector
from shared.errors import ClientClosed, RateLimited, UpstreamError
from shared.events import (
    Failed,
    Finished,
    GenerationEvent,
    Started,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)

SHELL = ResponseShell(id="resp_abc", created_at=100, model="m")


def _run(events: list[GenerationEvent]) -> tuple[ResponseProjector, list[StreamEvent]]:
    projector = ResponseProjector(SHELL)
    out: list[StreamEvent] = []
    for event in events:
        out += projector.feed(event)
    return projector, out


def _wire(value: object) -> Any:
    """What the client receives (``to_builtins`` cannot render the still-encoded echoed fields)."""
    return json.loads(msgspec.json.encode(value))


def _types(events: list[StreamEvent]) -> list[str]:
    return [_wire(event)["type"] for event in events]


def test_text_then_tool_call_opens_and_closes_items_in_order() -> None:
    projector, events = _run(
        [
            Started("w"),
            TextDelta("Let me "),
            TextDelta("check."),
            ToolCallStarted(0, "call_1", "weather"),
            ToolCallDelta(0, '{"city"'),
            ToolCallDelta(0, ':"Paris"}'),
            Usage(5, 7, cached_tokens=2),
            Finished("tool_calls", finished_at=123),
        ]
    )
    assert _types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [_wire(e)["sequence_number"] for e in events] == list(range(len(events)))
    final = projector.snapshot()
    assert final.status == "completed" and final.completed_at == 123
    message, call = final.output
    assert _wire(message)["content"][0]["text"] == "Let me check."
    assert _wire(call) == {
        "type": "function_call",
        "id": "fc_abc001",
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city":"Paris"}',
        "status": "completed",
    }
    assert final.usage is not None and final.usage.total_tokens == 12
    assert final.usage.input_tokens_details.cached_tokens == 2


def test_whitespace_between_text_and_a_tool_call_opens_no_message() -> None:
    projector, events = _run(
        [
            Started("w"),
            TextDelta("\n\n"),
            ToolCallStarted(0, "call_1", "weather"),
            ToolCallDelta(0, "{}"),
            TextDelta(" \n"),
            ToolCallStarted(1, "call_2", "weather"),
            ToolCallDelta(1, "{}"),
            Finished("tool_calls"),
        ]
    )
    assert [_wire(item)["type"] for item in projector.snapshot().output] == ["function_call", "function_call"]
    assert "response.output_text.delta" not in _types(events)


def test_leading_whitespace_stays_with_the_text_that_follows() -> None:
    projector, events = _run([Started("w"), TextDelta("  "), TextDelta("Hi"), Finished("stop")])
    (message,) = projector.snapshot().output
    assert _wire(message)["content"][0]["text"] == "  Hi"
    deltas = [_wire(e)["delta"] for e in events if _wire(e)["type"] == "response.output_text.delta"]
    assert deltas == ["  Hi"]


def test_a_call_to_a_custom_tool_comes_out_as_a_custom_tool_call_with_its_input() -> None:
    tools = msgspec.Raw(b'[{"type":"function","name":"shell"},{"type":"custom","name":"apply_patch"}]')
    projector = ResponseProjector(msgspec.structs.replace(SHELL, tools=tools))
    patch = '*** Begin Patch\n+"x"\n*** End Patch'
    arguments = msgspec.json.encode({"input": patch}).decode()
    events: list[StreamEvent] = []
    for event in [
        Started("w"),
        ToolCallStarted(0, "call_1", "apply_patch"),
        ToolCallDelta(0, arguments[:9]),
        ToolCallDelta(0, arguments[9:]),
        ToolCallStarted(1, "call_2", "shell"),
        ToolCallDelta(1, "{}"),
        Finished("tool_calls"),
    ]:
        events += projector.feed(event)
    wire = [_wire(event) for event in events]
    assert [event["type"] for event in wire][2:7] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert wire[2]["item"] == {
        "type": "custom_tool_call",
        "id": "ctc_abc000",
        "call_id": "call_1",
        "name": "apply_patch",
        "input": "",
        "status": "in_progress",
    }
    assert wire[3]["delta"] == patch and wire[4]["input"] == patch
    assert wire[5]["item"]["input"] == patch and wire[5]["item"]["status"] == "completed"
    custom, function = (_wire(item) for item in projector.snapshot().output)
    assert custom["type"] == "custom_tool_call" and custom["input"] == patch
    assert function["type"] == "function_call" and function["arguments"] == "{}"


def test_added_items_are_snapshots_not_live_objects() -> None:
    _, events = _run([Started("w"), TextDelta("a"), TextDelta("b"), Finished("stop")])
    added = _wire(events[2])
    assert added["item"] == {
        "type": "message",
        "id": "msg_abc000",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert _wire(events[0])["response"]["output"] == []


def test_lifecycle_events_carry_no_usage_and_no_error() -> None:
    _, events = _run([Started("w"), TextDelta("x"), Usage(1, 1), Finished("stop")])
    created = _wire(events[0])["response"]
    assert (created["status"], created["usage"], created["error"], created["incomplete_details"]) == (
        "in_progress",
        None,
        None,
        None,
    )


def test_length_finish_is_incomplete_with_the_reason() -> None:
    projector, events = _run([Started("w"), TextDelta("x"), Finished("length")])
    assert _types(events)[-1] == "response.incomplete"
    final = projector.snapshot()
    assert final.status == "incomplete" and final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert _wire(final.output[0])["status"] == "incomplete"


def test_failure_after_output_sends_a_hybrid_error_then_response_failed() -> None:
    projector, events = _run([Started("w"), TextDelta("x"), Failed(UpstreamError("boom").info())])
    assert _types(events)[-5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    error = _wire(events[-2])
    assert error["message"] == "boom" and error["error"] == {
        "type": "upstream_error",
        "code": None,
        "message": "boom",
        "param": None,
    }
    assert projector.snapshot().error is not None
    assert _wire(projector.snapshot().error) == {"code": "server_error", "message": "boom"}


def test_rate_limit_failures_keep_a_code_codex_understands() -> None:
    projector, _ = _run([Started("w"), Failed(RateLimited("slow down").info())])
    assert projector.error is not None and projector.error.code == "rate_limit_exceeded"


def test_cancellation_ends_quietly_as_cancelled() -> None:
    projector, events = _run([Started("w"), TextDelta("x"), Failed(ClientClosed("bye").info())])
    assert "response.failed" not in _types(events)
    assert projector.done and projector.snapshot().status == "cancelled"


def test_a_failure_before_any_event_still_starts_with_response_created() -> None:
    projector = ResponseProjector(SHELL)
    events = projector.fail(UpstreamError("down").info())
    assert _types(events) == ["response.created", "response.in_progress", "error", "response.failed"]


def test_unstarted_response_is_queued() -> None:
    snapshot = ResponseProjector(SHELL).snapshot()
    assert (snapshot.status, snapshot.output, snapshot.usage) == ("queued", [], None)


def test_the_same_log_always_projects_the_same_stream() -> None:
    log: list[GenerationEvent] = [Started("w"), TextDelta("a"), ToolCallStarted(0, "c", "f"), Finished("stop", 5)]
    assert encode_sse(_run(log)[1]) == encode_sse(_run(log)[1])


def test_sse_frames_name_the_event_type() -> None:
    _, events = _run([Started("w")])
    frames = encode_sse(events).decode().split("\n\n")
    assert frames[0].startswith("event: response.created\ndata: {")
    assert frames[1].startswith("event: response.in_progress\ndata: {")
