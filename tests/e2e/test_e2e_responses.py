"""The Responses API through real processes, driven by the official openai SDK (and raw HTTP for Codex)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import PATCH
from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

FULL_TEXT = " ".join(f"chunk{i}" for i in range(20))
SLOW_TEXT = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def strict(gateway: GatewayProcesses) -> Iterator[openai.OpenAI]:
    """A client that validates every body and event against the SDK's models."""
    with openai.OpenAI(
        base_url=gateway.base_url, api_key="test", max_retries=0, timeout=20, _strict_response_validation=True
    ) as sdk:
        yield sdk


def _sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of a raw SSE body."""
    frames = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            frames.append((lines.get("event", ""), json.loads(lines["data"])))
    return frames


def _wait_status(client: openai.OpenAI, response_id: str, statuses: set[str], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in statuses or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_create_returns_a_stored_completed_response(strict: openai.OpenAI) -> None:
    raw = strict.responses.with_raw_response.create(model="fake-model", input="say words", metadata={"k": "v"})
    response = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert response.id.startswith("resp_") and response.object == "response"
    assert (response.status, response.output_text, response.error) == ("completed", FULL_TEXT, None)
    assert response.store is True and response.metadata == {"k": "v"}
    assert response.completed_at is not None and response.completed_at >= response.created_at
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (2, 20, 22)
    again = strict.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()


def test_stream_follows_the_canonical_event_sequence(gateway: GatewayProcesses) -> None:
    body = {"model": "fake-model", "input": "say words", "stream": True}
    with httpx.Client(timeout=20) as http:
        started = time.monotonic()
        reply = http.post(f"{gateway.base_url}/responses", json=body, headers={"authorization": "Bearer test"})
        elapsed = time.monotonic() - started
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    frames = _sse(reply)
    assert all(name == data["type"] for name, data in frames)
    assert [data["sequence_number"] for _, data in frames] == list(range(len(frames)))
    types = [data["type"] for _, data in frames]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[4:24] == ["response.output_text.delta"] * 20
    assert types[24:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert frames[0][1]["response"]["output"] == [] and frames[0][1]["response"]["usage"] is None
    final = frames[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == FULL_TEXT
    assert final["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert elapsed < 5  # the body closed right after the terminal event


def test_sdk_stream_helper_and_typed_parsing(strict: openai.OpenAI) -> None:
    with strict.responses.stream(model="fake-model", input="say words") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == FULL_TEXT == final.output_text
    assert final.status == "completed"


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_are_output_items(strict: openai.OpenAI, stream: bool) -> None:
    if stream:
        with strict.responses.stream(model="fake-tools", input="weather?", tools=[WEATHER_TOOL]) as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        response = strict.responses.create(model="fake-tools", input="weather?", tools=[WEATHER_TOOL])
    assert [item.type for item in response.output] == ["function_call"]
    call = response.output[0]
    assert call.type == "function_call"
    assert (call.name, call.call_id, json.loads(call.arguments)) == ("get_weather", "call_fake", {"city": "Paris"})
    assert call.id is not None and call.id.startswith("fc_")
    assert response.status == "completed"
    assert response.tools[0].type == "function" and response.tools[0].name == "get_weather"


def test_previous_response_id_continues_the_conversation_with_tool_results(strict: openai.OpenAI) -> None:
    first = strict.responses.create(
        model="fake-tools", input="weather in Paris?", instructions="first rules", tools=[WEATHER_TOOL]
    )
    call = first.output[0]
    assert call.type == "function_call"
    second = strict.responses.create(
        model="fake-transcript",
        previous_response_id=first.id,
        instructions="second rules",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.previous_response_id == first.id
    assert second.output_text == (
        "system:second rules | user:weather in Paris? | "
        'assistant: call(call_fake get_weather {"city": "Paris"}) | tool(call_fake):sunny'
    )
    third = strict.responses.create(model="fake-transcript", previous_response_id=second.id, input="thanks")
    assert third.output_text.startswith("user:weather in Paris? | assistant: call(")
    assert third.output_text.endswith(f" | assistant:{second.output_text} | user:thanks")


def test_unknown_previous_response_is_a_clear_404(strict: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        strict.responses.create(model="fake-model", input="hi", previous_response_id="resp_nope")
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"


def test_resume_replays_stored_events_after_a_cursor(strict: openai.OpenAI) -> None:
    with strict.responses.stream(model="fake-model", input="say words") as stream:
        everything = [(event.sequence_number, event.type) for event in stream]
        response_id = stream.get_final_response().id
    replayed = [(e.sequence_number, e.type) for e in strict.responses.retrieve(response_id, stream=True)]
    assert replayed == everything
    tail = [(e.sequence_number, e.type) for e in strict.responses.retrieve(response_id, stream=True, starting_after=5)]
    assert tail == everything[6:]
    with strict.responses.stream(response_id=response_id, starting_after=20) as resumed:
        assert [(e.sequence_number, e.type) for e in resumed] == everything[21:]
        assert resumed.get_final_response().output_text == FULL_TEXT


def test_replay_of_a_running_response_follows_it_to_the_end(strict: openai.OpenAI) -> None:
    response = strict.responses.create(model="mock-slow", input="count", background=True)
    assert response.status == "queued" and response.background is True
    time.sleep(0.2)
    events = list(strict.responses.retrieve(response.id, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == SLOW_TEXT


def test_background_response_completes_without_a_client(strict: openai.OpenAI) -> None:
    response = strict.responses.create(model="fake-model", input="say words", background=True)
    assert (response.status, response.output, response.usage) == ("queued", [], None)
    done = _wait_status(strict, response.id, {"completed"})
    assert done.status == "completed" and done.output_text == FULL_TEXT


def test_background_stream_keeps_running_after_the_client_leaves(gateway: GatewayProcesses) -> None:
    body = {"model": "mock-slow", "input": "count", "stream": True, "background": True}
    with (
        httpx.Client(timeout=20, headers={"authorization": "Bearer test"}) as http,
        http.stream("POST", f"{gateway.base_url}/responses", json=body) as reply,
    ):
        first = next(line for line in reply.iter_lines() if line.startswith("data: "))
    response_id = json.loads(first.removeprefix("data: "))["response"]["id"]
    with openai.OpenAI(base_url=gateway.base_url, api_key="test", max_retries=0) as sdk:
        done = _wait_status(sdk, response_id, {"completed", "failed", "cancelled"})
    assert (done.status, done.output_text) == ("completed", SLOW_TEXT)


def test_cancel_stops_a_background_response(strict: openai.OpenAI) -> None:
    response = strict.responses.create(model="mock-slow", input="count", background=True)
    _wait_status(strict, response.id, {"in_progress"})
    cancelled = strict.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    time.sleep(0.3)
    assert strict.responses.retrieve(response.id).status == "cancelled"
    assert strict.responses.cancel(response.id).status == "cancelled"  # idempotent
    finished = strict.responses.create(model="fake-model", input="hi")
    with pytest.raises(openai.BadRequestError):
        strict.responses.cancel(finished.id)


def test_delete_removes_the_response(strict: openai.OpenAI, gateway: GatewayProcesses) -> None:
    response = strict.responses.create(model="fake-model", input="hi")
    reply = httpx.delete(f"{gateway.base_url}/responses/{response.id}", headers={"authorization": "Bearer test"})
    assert reply.status_code == 200
    assert reply.json() == {"id": response.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        strict.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        strict.responses.delete(response.id)


def test_a_response_is_visible_only_to_the_key_that_created_it(
    strict: openai.OpenAI, gateway: GatewayProcesses
) -> None:
    response = strict.responses.create(model="fake-model", input="hi")
    with openai.OpenAI(base_url=gateway.base_url, api_key="someone-else", max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError):
            list(other.responses.input_items.list(response.id))
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="fake-model", input="x", previous_response_id=response.id)
    assert strict.responses.retrieve(response.id).status == "completed"


def test_store_false_keeps_nothing_retrievable(strict: openai.OpenAI) -> None:
    response = strict.responses.create(model="fake-model", input="hi", store=False)
    assert response.store is False and response.output_text == FULL_TEXT
    with pytest.raises(openai.NotFoundError):
        strict.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        strict.responses.create(model="fake-model", input="x", previous_response_id=response.id)


def test_input_items_are_listed_with_ids_and_paged(strict: openai.OpenAI) -> None:
    items: Any = [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "answer"}]},
        {"role": "user", "content": "second"},
    ]
    response = strict.responses.create(model="fake-model", input=items)
    listed = list(strict.responses.input_items.list(response.id, limit=1, order="asc"))
    assert [item.type for item in listed] == ["message"] * 4
    assert [getattr(item, "role", None) for item in listed] == ["developer", "user", "assistant", "user"]
    assert len({item.id for item in listed}) == 4
    newest_first = strict.responses.input_items.list(response.id)
    assert [item.id for item in newest_first.data] == [item.id for item in reversed(listed)]
    assert newest_first.has_more is False


def test_errors_before_output_are_http_errors_and_after_it_a_failed_response(strict: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        strict.responses.create(model="no-such-model", input="hi")
    with pytest.raises(openai.RateLimitError):
        strict.responses.create(model="fake-error-429", input="hi")
    with pytest.raises(openai.InternalServerError) as caught:
        strict.responses.create(model="fake-error-500", input="hi", stream=True)
    assert caught.value.status_code == 502
    with pytest.raises(openai.APIError), strict.responses.stream(model="fake-midstream-error", input="hi") as stream:
        for _ in stream:
            pass


def test_midstream_failure_ends_with_response_failed(gateway: GatewayProcesses, strict: openai.OpenAI) -> None:
    body = {"model": "fake-midstream-error", "input": "hi", "stream": True}
    reply = httpx.post(f"{gateway.base_url}/responses", json=body, headers={"authorization": "Bearer test"}, timeout=20)
    frames = _sse(reply)
    assert [data["type"] for _, data in frames[-2:]] == ["error", "response.failed"]
    error, failed = frames[-2][1], frames[-1][1]["response"]
    assert error["error"]["message"] == error["message"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete"
    assert strict.responses.retrieve(failed["id"]).status == "failed"


def test_codex_style_request(gateway: GatewayProcesses) -> None:
    """What Codex CLI sends: full id-less history, reasoning items, custom tools, store false, stream."""
    body = {
        "model": "fake-transcript",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "env"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": "gA"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "running ls"}]},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":["ls"]}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "web_search_call", "action": {"type": "search", "query": "x"}},
        ],
        "tools": [
            {"type": "function", "name": "shell", "strict": False, "parameters": {"type": "object", "properties": {}}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "conv-1",
        "text": {"verbosity": "low"},
        "client_metadata": {"x": "y"},
    }
    headers = {"authorization": "Bearer test", "originator": "codex_cli_rs", "session_id": "s1", "version": "0.1"}
    reply = httpx.post(f"{gateway.base_url}/responses", json=body, headers=headers, timeout=20)
    assert reply.status_code == 200, reply.text
    frames = _sse(reply)
    assert frames[0][1]["type"] == "response.created" and frames[-1][1]["type"] == "response.completed"
    done_items = [data["item"] for _, data in frames if data["type"] == "response.output_item.done"]
    assert done_items[0]["role"] == "assistant"
    text = done_items[0]["content"][0]["text"]
    assert text == (
        "system:You are Codex. | system:env | user:list files | assistant:running ls"
        ' call(call_1 shell {"command":["ls"]}) | tool(call_1):a.txt'
        ' | assistant: call(call_2 apply_patch {"input":"*** Begin Patch"})'
    )
    usage = frames[-1][1]["response"]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    response_id = frames[-1][1]["response"]["id"]
    assert httpx.get(f"{gateway.base_url}/responses/{response_id}", headers=headers).status_code == 404


@pytest.mark.parametrize("stream", [False, True])
def test_custom_tools_are_offered_and_called_with_free_text_input(strict: openai.OpenAI, stream: bool) -> None:
    """Codex's freeform ``apply_patch``: the backend sees a function, the client a ``custom_tool_call``."""
    tool: Any = {
        "type": "custom",
        "name": "apply_patch",
        "description": "Edit files.",
        "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'},
    }
    if stream:
        with strict.responses.stream(model="fake-tools", input="add hello.txt", tools=[tool]) as events:
            seen = list(events)
            response = events.get_final_response()
        inputs = [event for event in seen if event.type == "response.custom_tool_call_input.done"]
        assert [event.input for event in inputs] == [PATCH]
    else:
        response = strict.responses.create(model="fake-tools", input="add hello.txt", tools=[tool])
    call = response.output[0]
    assert call.type == "custom_tool_call"
    assert (call.name, call.call_id, call.input) == ("apply_patch", "call_fake", PATCH)
    assert call.id is not None and call.id.startswith("ctc_")
    follow_up = strict.responses.create(
        model="fake-transcript",
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}],
        previous_response_id=response.id,
        tools=[tool],
    )
    wrapped = json.dumps({"input": PATCH}, separators=(",", ":"))
    assert follow_up.output_text == (
        f"user:add hello.txt | assistant: call(call_fake apply_patch {wrapped}) | tool(call_fake):Done!"
    )


def test_legacy_prefix_serves_responses(gateway: GatewayProcesses) -> None:
    base = gateway.base_url.replace("/v1", "/chaynsapi/v1")
    with openai.OpenAI(base_url=base, api_key="test", max_retries=0) as legacy:
        response = legacy.responses.create(model="mock-1", input="hi")
        assert legacy.responses.retrieve(response.id).output_text == response.output_text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{", None),
        (b'{"input": "hi"}', "model"),
        (b'{"model": "fake-model"}', "input"),
        (b'{"model": "fake-model", "input": "hi", "background": true, "store": false}', "store"),
        (b'{"model": "fake-model", "input": [{"type": "message", "role": "robot", "content": "x"}]}', "input[0]"),
        (b'{"model": "fake-model", "input": "hi", "tool_choice": {"type": "function", "name": "nope"}}', "tool_choice"),
    ],
)
def test_bad_requests_get_openai_shaped_400s(gateway: GatewayProcesses, body: bytes, param: str | None) -> None:
    reply = httpx.post(f"{gateway.base_url}/responses", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
