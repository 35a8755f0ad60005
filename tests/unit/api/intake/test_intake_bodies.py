"""The body guard on its own: the byte budget, the checks, and what a failed read is answered with."""

from __future__ import annotations

import msgspec
import pytest
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.app import error_shape
from api.connections import BODY_TIMED_OUT
from api.intake.bodies import BodyBudget, body_guard

MAX = 1000


def _scope(method: str = "POST", length: int | None = None) -> Scope:
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    return {"type": "http", "method": method, "headers": headers, "state": {}, "path": "/v1/x"}  # type: ignore[typeddict-item]


def _receiving(*messages: Message) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive  # type: ignore[return-value]


class _Recorder:
    """The app behind the guard: what body it read; and what was sent to the client."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.read: list[bytes] = []
        self.held_while_running: list[int] = []
        self.sent: list[Message] = []

    def app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            message = await receive()
            self.read.append(message["body"])  # type: ignore[typeddict-item]
            self.held_while_running.append(self.budget.held)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            self.held_while_running.append(self.budget.held)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        return app

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def status(self) -> int:
        return int(self.sent[0]["status"])  # type: ignore[typeddict-item]

    def error(self) -> dict[str, str]:
        body = self.sent[1]["body"]  # type: ignore[typeddict-item]
        return msgspec.json.decode(body)["error"]  # type: ignore[no-any-return]


async def _guarded(scope: Scope, receive: Receive, budget: BodyBudget | None = None) -> _Recorder:
    recorder = _Recorder(budget or BodyBudget(4 * MAX))
    await body_guard(recorder.budget, MAX, error_shape)(recorder.app())(scope, receive, recorder.send)
    return recorder


async def test_the_route_gets_the_whole_body_and_its_share_is_given_back_when_the_response_starts() -> None:
    chunks = [{"type": "http.request", "body": b'{"a": ', "more_body": True}, {"type": "http.request", "body": b"1}"}]
    recorder = await _guarded(_scope(length=8), _receiving(*chunks))  # type: ignore[arg-type]
    assert recorder.read == [b'{"a": 1}']
    assert recorder.held_while_running == [8, 0]
    assert recorder.status() == 200 and recorder.budget.held == 0


async def test_a_body_past_the_budget_is_a_503_before_it_is_read() -> None:
    budget = BodyBudget(4 * MAX)
    assert budget.take(4 * MAX - 10)
    recorder = await _guarded(_scope(length=20), _receiving(), budget)
    assert recorder.status() == 503 and recorder.read == []
    assert recorder.error()["code"] == "server_busy"
    assert (b"retry-after", b"1") in recorder.sent[0]["headers"]  # type: ignore[typeddict-item]
    assert budget.held == 4 * MAX - 10


async def test_an_undeclared_body_is_counted_as_it_arrives() -> None:
    budget = BodyBudget(4 * MAX)
    assert budget.take(4 * MAX - 10)
    chunks = [{"type": "http.request", "body": b"x" * 8, "more_body": True}, {"type": "http.request", "body": b"yyy"}]
    recorder = await _guarded(_scope(), _receiving(*chunks), budget)  # type: ignore[arg-type]
    assert recorder.status() == 503 and budget.held == 4 * MAX - 10


@pytest.mark.parametrize("length", [MAX + 1, None])
async def test_a_body_over_the_size_limit_is_a_413(length: int | None) -> None:
    chunk = {"type": "http.request", "body": b"x" * (MAX + 1)}
    recorder = await _guarded(_scope(length=length), _receiving(chunk))  # type: ignore[arg-type]
    assert recorder.status() == 413 and recorder.error()["code"] == "payload_too_large"
    assert recorder.budget.held == 0


@pytest.mark.parametrize(("timed_out", "status"), [(False, 499), (True, 408)])
async def test_a_connection_closed_mid_body_is_a_client_close_or_a_timeout(timed_out: bool, status: int) -> None:
    scope = _scope(length=100)
    scope["state"][BODY_TIMED_OUT] = timed_out
    recorder = await _guarded(scope, _receiving({"type": "http.request", "body": b"{", "more_body": True}))  # type: ignore[arg-type]
    assert recorder.status() == status and recorder.budget.held == 0


async def test_a_body_too_deep_to_decode_is_a_400_before_the_route() -> None:
    recorder = _Recorder(BodyBudget(10**6))
    body = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    receive = _receiving({"type": "http.request", "body": body})  # type: ignore[arg-type]
    await body_guard(recorder.budget, 10**6, error_shape)(recorder.app())(_scope(), receive, recorder.send)
    assert recorder.status() == 400 and recorder.read == []
    assert "nested too deeply" in recorder.error()["message"]


async def test_requests_without_a_body_pass_untouched() -> None:
    recorder = await _guarded(_scope("GET"), _receiving({"type": "http.request", "body": b"raw"}))  # type: ignore[arg-type]
    assert recorder.read == [b"raw"] and recorder.held_while_running == [0, 0]
