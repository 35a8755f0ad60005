"""A deterministic fake upstream speaking the OpenAI Responses API (``POST /v1/responses``) over real HTTP.

It checks requests the way the real API does: the bearer key (``--api-key``) is required, unknown
top-level fields, chat-shaped tools and misplaced content types are a 400, and a
``function_call_output`` must answer an earlier ``function_call`` in the input. Input items must carry
their ``type``. Streams follow the canonical event sequence (``response.created``,
``response.in_progress``, ``output_item.added``, ``content_part.added``, ``output_text.delta``…,
``output_text.done``, ``content_part.done``, ``output_item.done``, ``response.completed``), every event
with its ``sequence_number`` and an ``event:`` line equal to its ``type``. By ``model``:

- any name: ``word0 word1 … word<N-1>``, one word per delta (N = ``--chunks``, default 8)
- ``resp-slow``: the same, ``slow_delta_s`` (0.1 s) between deltas
- ``resp-tools``: one ``function_call`` of the first tool, arguments ``{"city": "Paris"}`` in three
  fragments (the plain reply when no tool is given)
- ``resp-reasoning``: a reasoning item with a streamed summary, then the plain reply
- ``resp-incomplete``: three deltas, then ``response.incomplete`` (``max_output_tokens``)
- ``resp-failed``: three deltas, then ``response.failed`` (``server_error``)
- ``resp-error-<status>``: that HTTP status with an OpenAI error body (429: ``rate_limit_exceeded`` and
  ``retry-after: 1``)
- ``resp-echo``: a transcript of what it received, in 16-character deltas: ``instructions:<text>``,
  then per input item ``<role>:<text>`` (images as ``[image <url>]``), ``call(<call_id> <name>
  <arguments>)`` or ``output(<call_id>):<output>``, joined by `` | ``

Usage: input tokens = words in the instructions and every input text, half of them (rounded down)
reported as cached; output tokens = deltas sent, reasoning tokens = reasoning deltas sent. A request
with ``stream`` false gets the final Response object as JSON. ``GET /_last`` returns the last request's
headers and body.

    python -m tests.fakes.responses_upstream --port 0 [--api-key KEY] [--chunks N]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal

import msgspec

from tests.fakes._serving import FakeProcess, argument_parser, serve

__all__ = ("DEFAULT_API_KEY", "RunningResponsesUpstream", "create_app")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Event = dict[str, Any]

DEFAULT_API_KEY = "sk-fake-responses"


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _InputText(_Strict, tag_field="type", tag="input_text", kw_only=True):
    text: str


class _InputImage(_Strict, tag_field="type", tag="input_image", kw_only=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto"] = "auto"


class _OutputText(_Strict, tag_field="type", tag="output_text", kw_only=True):
    text: str
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] | None = None


class _Refusal(_Strict, tag_field="type", tag="refusal", kw_only=True):
    refusal: str


_Part = _InputText | _InputImage | _OutputText | _Refusal


class _Message(_Strict, tag_field="type", tag="message", kw_only=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[_Part]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(_part_text(part) for part in self.content)


class _FunctionCall(_Strict, tag_field="type", tag="function_call", kw_only=True):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class _FunctionCallOutput(_Strict, tag_field="type", tag="function_call_output", kw_only=True):
    call_id: str
    output: str
    id: str | None = None
    status: str | None = None


_Item = _Message | _FunctionCall | _FunctionCallOutput


class _Tool(_Strict, tag_field="type", tag="function", kw_only=True):
    name: str
    parameters: dict[str, Any] | None
    strict: bool | None = None
    description: str | None = None


class _NamedChoice(_Strict, tag_field="type", tag="function", kw_only=True):
    name: str


class _FormatText(_Strict, tag_field="type", tag="text", kw_only=True):
    pass


class _FormatJsonObject(_Strict, tag_field="type", tag="json_object", kw_only=True):
    pass


class _FormatJsonSchema(_Strict, tag_field="type", tag="json_schema", kw_only=True):
    name: str
    schema: dict[str, Any]
    strict: bool | None = None
    description: str | None = None


class _Text(_Strict, kw_only=True):
    format: _FormatText | _FormatJsonObject | _FormatJsonSchema | None = None
    verbosity: str | None = None


class _Reasoning(_Strict, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class _Request(_Strict, kw_only=True):
    model: str
    input: str | list[_Item]
    instructions: str | None = None
    tools: list[_Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | _NamedChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    reasoning: _Reasoning | None = None
    text: _Text | None = None
    user: str | None = None
    stream: bool | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    previous_response_id: str | None = None
    truncation: str | None = None
    service_tier: str | None = None
    background: bool | None = None

    def items(self) -> list[_Item]:
        return [_Message(role="user", content=self.input)] if isinstance(self.input, str) else self.input


class _LastRequest(msgspec.Struct):
    headers: dict[str, str]
    body: msgspec.Raw


_decoder = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


def _part_text(part: _Part) -> str:
    if isinstance(part, _InputText | _OutputText):
        return part.text
    if isinstance(part, _Refusal):
        return part.refusal
    return f"[image {part.image_url or part.file_id}]"


def _error_body(message: str, kind: str, code: str | None, param: str | None = None) -> bytes:
    return _encoder.encode({"error": {"message": message, "type": kind, "param": param, "code": code}})


def _check(request: _Request) -> str | None:
    """What the real API would reject in a request that decodes, or ``None``."""
    calls: set[str] = set()
    for index, item in enumerate(request.items()):
        if isinstance(item, _FunctionCall):
            calls.add(item.call_id)
        elif isinstance(item, _FunctionCallOutput) and item.call_id not in calls:
            return f"No tool call found for function call output with call_id {item.call_id} (input[{index}])."
        elif isinstance(item, _Message) and isinstance(item.content, list):
            for part in item.content:
                assistant = item.role == "assistant"
                if assistant != isinstance(part, _OutputText | _Refusal):
                    kind = type(part).__struct_config__.tag
                    return f"Invalid value: '{kind}' is not allowed in the {item.role} message (input[{index}])."
    return None


def _transcript(request: _Request) -> str:
    entries = [f"instructions:{request.instructions}"] if request.instructions else []
    for item in request.items():
        if isinstance(item, _Message):
            entries.append(f"{item.role}:{item.text()}")
        elif isinstance(item, _FunctionCall):
            entries.append(f"call({item.call_id} {item.name} {item.arguments})")
        else:
            entries.append(f"output({item.call_id}):{item.output}")
    return " | ".join(entries)


def _input_tokens(request: _Request) -> int:
    texts = [request.instructions or ""]
    for item in request.items():
        texts.append(item.text() if isinstance(item, _Message) else "")
    return sum(len(text.split()) for text in texts)


class _Stream:
    """Builds one response's events in order, numbering them and keeping the Response object current."""

    def __init__(self, request: _Request) -> None:
        self.request = request
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.deltas = 0
        self.reasoning_deltas = 0
        self.response: dict[str, Any] = {
            "id": "resp_fake",
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "error": None,
            "incomplete_details": None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": request.model,
            "output": self.output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": None,
            "store": bool(request.store),
            "temperature": request.temperature if request.temperature is not None else 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [msgspec.to_builtins(tool) for tool in request.tools or ()],
            "top_p": request.top_p if request.top_p is not None else 1.0,
            "truncation": "disabled",
            "usage": None,
            "user": request.user,
            "metadata": request.metadata or {},
        }

    def event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def snapshot(self) -> dict[str, Any]:
        """A deep copy: events are built before they are sent, and the object keeps changing."""
        copy: dict[str, Any] = msgspec.json.decode(_encoder.encode(self.response))
        return copy

    def start(self) -> Iterator[Event]:
        yield self.event("response.created", response=self.snapshot())
        yield self.event("response.in_progress", response=self.snapshot())

    def message(self, pieces: list[str], *, cut: bool = False) -> Iterator[Event]:
        index, item_id = len(self.output), f"msg_fake{len(self.output)}"
        item: dict[str, Any] = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant"}
        self.output.append({**item, "content": []})
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        yield self.event("response.output_item.added", output_index=index, item={**item, "content": []})
        yield self.event("response.content_part.added", **where, part=_text_part(""))
        for piece in pieces:
            self.deltas += 1
            yield self.event("response.output_text.delta", **where, delta=piece, logprobs=[])
        text = "".join(pieces)
        self.output[index] = {**item, "status": "incomplete" if cut else "completed", "content": [_text_part(text)]}
        yield self.event("response.output_text.done", **where, text=text, logprobs=[])
        yield self.event("response.content_part.done", **where, part=_text_part(text))
        yield self.event("response.output_item.done", output_index=index, item=self.output[index])

    def function_call(self, name: str, fragments: list[str]) -> Iterator[Event]:
        index, item_id = len(self.output), f"fc_fake{len(self.output)}"
        item = {"id": item_id, "type": "function_call", "status": "in_progress", "call_id": f"call_fake{index}"}
        item |= {"name": name, "arguments": ""}
        self.output.append(item)
        yield self.event("response.output_item.added", output_index=index, item=dict(item))
        for fragment in fragments:
            self.deltas += 1
            yield self.event(
                "response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=fragment
            )
        arguments = "".join(fragments)
        self.output[index] = {**item, "status": "completed", "arguments": arguments}
        yield self.event(
            "response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=arguments
        )
        yield self.event("response.output_item.done", output_index=index, item=self.output[index])

    def reasoning(self, pieces: list[str]) -> Iterator[Event]:
        index, item_id = len(self.output), f"rs_fake{len(self.output)}"
        self.output.append({"id": item_id, "type": "reasoning", "summary": []})
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        yield self.event("response.output_item.added", output_index=index, item=dict(self.output[index]))
        yield self.event("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
        for piece in pieces:
            self.reasoning_deltas += 1
            yield self.event("response.reasoning_summary_text.delta", **where, delta=piece)
        summary = {"type": "summary_text", "text": "".join(pieces)}
        yield self.event("response.reasoning_summary_text.done", **where, text=summary["text"])
        yield self.event("response.reasoning_summary_part.done", **where, part=summary)
        self.output[index] = {"id": item_id, "type": "reasoning", "summary": [summary]}
        yield self.event("response.output_item.done", output_index=index, item=self.output[index])

    def finish(self, status: str, **fields: Any) -> Event:
        prompt = _input_tokens(self.request)
        output_tokens = self.deltas + self.reasoning_deltas
        self.response |= {"status": status, **fields}
        self.response["usage"] = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": prompt // 2},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_deltas},
            "total_tokens": prompt + output_tokens,
        }
        if status == "failed":
            self.response["usage"] = None
        return self.event(f"response.{status}", response=self.snapshot())


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class FakeResponsesUpstream:
    """The ASGI app."""

    def __init__(self, *, api_key: str, chunks: int, slow_delta_s: float = 0.1) -> None:
        self.api_key = api_key
        self.chunks = chunks
        self.slow_delta_s = slow_delta_s
        self.last = _LastRequest({}, msgspec.Raw(b"null"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/_last":
            await _reply(send, 200, _encoder.encode(self.last))
        elif method == "POST" and path.endswith("/responses"):
            await self._responses(scope, receive, send)
        else:
            await _reply(send, 404, _error_body(f"no route {method} {path}", "invalid_request_error", None))

    async def _responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.last = _LastRequest(headers, msgspec.Raw(body))
        if headers.get("authorization") != f"Bearer {self.api_key}":
            refusal = _error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            await _reply(send, 401, refusal)
            return
        try:
            request = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            await _reply(send, 400, _error_body(f"Invalid request: {exc}", "invalid_request_error", None))
            return
        problem = _check(request)
        if problem is not None:
            await _reply(send, 400, _error_body(problem, "invalid_request_error", "invalid_value", "input"))
            return
        if request.model.startswith("resp-error-"):
            status = int(request.model.removeprefix("resp-error-"))
            code = "rate_limit_exceeded" if status == 429 else "server_error"
            extra = [(b"retry-after", b"1")] if status == 429 else []
            kind = "requests" if status == 429 else "server_error"
            await _reply(send, status, _error_body(f"fake upstream error {status}", kind, code), extra)
            return
        stream = _Stream(request)
        events = list(self._events(stream))
        if not request.stream:
            await _reply(send, 200, _encoder.encode(events[-1]["response"]))
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        for event in events:
            if request.model == "resp-slow" and event["type"] == "response.output_text.delta":
                await asyncio.sleep(self.slow_delta_s)
            frame = b"event: " + event["type"].encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _events(self, stream: _Stream) -> Iterator[Event]:
        request, model = stream.request, stream.request.model
        words = [f"word{i}" + (" " if i < self.chunks - 1 else "") for i in range(self.chunks)]
        yield from stream.start()
        if model == "resp-tools" and request.tools:
            yield from stream.function_call(request.tools[0].name, ['{"city', '": "Par', 'is"}'])
        elif model == "resp-echo":
            text = _transcript(request)
            yield from stream.message([text[i : i + 16] for i in range(0, len(text), 16)])
        elif model == "resp-failed":
            yield from stream.message(words[:3], cut=True)
            yield stream.finish("failed", error={"code": "server_error", "message": "fake upstream failed mid-stream"})
            return
        elif model == "resp-incomplete":
            yield from stream.message(words[:3], cut=True)
            yield stream.finish("incomplete", incomplete_details={"reason": "max_output_tokens"})
            return
        else:
            if model == "resp-reasoning":
                yield from stream.reasoning(["Thinking ", "it ", "over."])
            yield from stream.message(words)
        yield stream.finish("completed")


_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def _reply(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(*, api_key: str = DEFAULT_API_KEY, chunks: int = 8) -> FakeResponsesUpstream:
    return FakeResponsesUpstream(api_key=api_key, chunks=chunks)


def main() -> None:
    parser = argument_parser()
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--chunks", type=int, default=8)
    args = parser.parse_args()
    serve(create_app(api_key=args.api_key, chunks=args.chunks), host=args.host, port=args.port)


class RunningResponsesUpstream(FakeProcess):
    """The fake as a subprocess; ``base_url`` ends in ``/v1``."""

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, chunks: int = 8) -> None:
        super().__init__("tests.fakes.responses_upstream", ["--api-key", api_key, "--chunks", str(chunks)])
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


if __name__ == "__main__":
    main()
