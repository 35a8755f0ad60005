"""The headers every upstream call carries: its request id, its credential and, when traced, its trace context."""

from __future__ import annotations

from shared.config import Account
from shared.generation import GenerationRequest, Message, TextPart
from worker.providers import UpstreamCall
from worker.providers._http import bearer_headers


def test_an_attempts_trace_context_goes_to_the_upstream() -> None:
    request = GenerationRequest("g", "req_1", "m", [Message("user", [TextPart("hi")])], "reply", 1)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert ("traceparent", traceparent) in bearer_headers(
        UpstreamCall(request, "m", Account("a", "sk"), traceparent=traceparent)
    )
    assert [name for name, _ in bearer_headers(UpstreamCall(request, "m", Account("a", "sk")))] == [
        "X-Request-ID",
        "Authorization",
    ]
