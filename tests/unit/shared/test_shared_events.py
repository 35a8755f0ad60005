from __future__ import annotations

import msgspec

from shared.errors import ErrorInfo
from shared.events import (
    Envelope,
    Failed,
    Finished,
    Started,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
    decode_batch,
    decode_envelope,
    encode_envelope,
)
from shared.generation import FunctionTool, GenerationRequest, Message, TextPart, decode_request, encode_request


def test_envelopes_round_trip_and_batch() -> None:
    events = [
        Started("w"),
        TextDelta("hi"),
        ToolCallStarted(0, "call_1", "f"),
        ToolCallDelta(0, "{}"),
        Usage(1, 2),
        Finished("stop"),
    ]
    encoded = [encode_envelope(Envelope("g", seq, event)) for seq, event in enumerate(events)]
    assert decode_envelope(encoded[1]) == Envelope("g", 1, TextDelta("hi"))
    batch = decode_batch(b"[" + b",".join(encoded) + b"]")
    assert [e.event for e in batch] == events
    assert [e.seq for e in batch] == list(range(len(events)))
    failed = Envelope("g", 9, Failed(ErrorInfo(502, "upstream_error", "boom", "c")))
    assert decode_envelope(encode_envelope(failed)) == failed


def test_generation_request_round_trips_with_raw_schemas() -> None:
    request = GenerationRequest(
        id="g",
        request_id="r",
        model="m",
        messages=[Message("user", [TextPart("hi")])],
        reply_to="c",
        created=1,
        tools=[FunctionTool("f", parameters=msgspec.Raw(b'{"type":"object"}'))],
    )
    decoded = decode_request(encode_request(request))
    assert decoded.messages[0].text() == "hi"
    assert bytes(decoded.tools[0].parameters) == b'{"type":"object"}'  # type: ignore[arg-type]
