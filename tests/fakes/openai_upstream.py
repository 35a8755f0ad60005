"""A fast, deterministic fake upstream speaking OpenAI Chat Completions over real HTTP.

The reply depends only on the request, so tests need no side channel. By ``model``:

- any name: ``chunk0 chunk1 … chunk<N-1>``, one word per chunk (N = ``--chunks``, default 20)
- ``fake-echo``: the last user message, in 8-character pieces
- ``fake-error-<status>``: that HTTP status with an OpenAI error body (429 adds ``retry-after: 1``)
- ``fake-leak-<status>``: that HTTP status with an error message echoing the bearer token it was sent,
  as a careless upstream might
- ``fake-slow``: waits ``slow_first_token_s`` before answering
- ``fake-stall``: two chunks, then nothing until the client disconnects
- ``fake-midstream-error``: three chunks, then the body ends without ``[DONE]`` or a finish reason
- ``fake-tools``: one call of the first tool, arguments ``{"city": "Paris"}`` in three fragments, or
  ``{"input": PATCH}`` when the tool takes an ``input`` (a custom tool, as the gateway offers it)
- ``fake-xml``: a model without native tools: ``Checking.`` and then, in the text bridge's XML after
  the trigger found in the prompt, a call of ``get_weather`` for Paris (plain text if no trigger)
- ``fake-xml-pause``: like ``fake-xml`` with a second call (Berlin) after the first; streamed, it
  stops after the first call's ``</invoke>`` until ``POST /_release`` (or 30 s, counted as a
  ``pause_timeouts``); ``paused`` in ``/_stats`` is the number of streams waiting there
- ``fake-roo``: a model serving Roo Code's own XML tool protocol, by the last user message: ``chat``
  in it: a plain answer; ``typo``: a ``<write_file>`` call (Roo's tool is ``write_to_file``); else
  text with a control character, then two ``<read_file>`` calls; in 9-character pieces
- ``fake-transcript``: the conversation it received, one ``role:text`` entry per message joined by
  `` | ``; tool calls as ``call(<id> <name> <arguments>)``, tool results as ``tool(<call id>):text``

Usage: prompt tokens = words in all message texts, completion tokens = chunks sent. ``GET /_stats``
returns counters: streams served, streams ``open`` now, streams whose client disconnected before their
end (``disconnects``), client ``connections`` ever opened (other than for ``/_stats``), and requests
per model (``by_model``).

    python -m tests.fakes.openai_upstream --port 0 [--chunks N] [--chunk-delay S]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from tests.fakes._serving import FakeProcess, argument_parser, serve

__all__ = ("FakeUpstreamSettings", "RunningFakeUpstream", "create_app")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class FakeUpstreamSettings(msgspec.Struct):
    chunks: int = 20
    chunk_delay_s: float = 0.0
    slow_first_token_s: float = 2.0


class _Part(msgspec.Struct):
    type: str = "text"
    text: str = ""


class _CallFunction(msgspec.Struct):
    name: str
    arguments: str


class _Call(msgspec.Struct):
    id: str
    function: _CallFunction


class _Message(msgspec.Struct):
    role: str = "user"
    content: str | list[_Part] | None = None
    tool_calls: list[_Call] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def transcript(self) -> str:
        if self.role == "tool":
            return f"tool({self.tool_call_id}):{self.text()}"
        calls = "".join(f" call({c.id} {c.function.name} {c.function.arguments})" for c in self.tool_calls or ())
        return f"{self.role}:{self.text()}{calls}"


class _Schema(msgspec.Struct):
    properties: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)


class _Function(msgspec.Struct):
    name: str
    parameters: _Schema | None = None


class _Tool(msgspec.Struct):
    function: _Function


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Request(msgspec.Struct):
    model: str
    messages: list[_Message]
    stream: bool = False
    stream_options: _StreamOptions | None = None
    tools: list[_Tool] | None = None


_encoder = msgspec.json.Encoder()
PATCH = '*** Begin Patch\n*** Add File: hello.txt\n+Hello, "world" \\o/\n*** End Patch'
_TRIGGER = re.compile(r"<<CALL_[a-z0-9]+>>")
_PAUSE = "\x00pause"
_PAUSE_MAX_S = 30.0
ROO_READ = "<read_file>\n<path>src/app.py</path>\n</read_file>"
ROO_REPLIES = {
    "chat": "Paris is the capital of France.",
    "typo": "<write_file>\n<path>notes.txt</path>\n<content>hi</content>\n</write_file>",
    "read": f"I will read it.\x07\n{ROO_READ}\n\nAnd then:\n<read_file>\n<path>src/other.py</path>\n</read_file>",
}
"""``fake-roo``'s replies, by the keyword in the last user message (``read`` when there is none)."""
_decoder = msgspec.json.Decoder(_Request)


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _args(function: _Function) -> str:
    if function.parameters and "input" in function.parameters.properties:
        return _encoder.encode({"input": PATCH}).decode()
    return '{"city": "Paris"}'


def _error(status: int, message: str) -> bytes:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return _encoder.encode({"error": {"message": message, "type": kind, "param": None, "code": f"fake_{status}"}})


class FakeUpstream:
    """The ASGI app."""

    def __init__(self, settings: FakeUpstreamSettings) -> None:
        self.settings = settings
        self.stats = {"requests": 0, "streams": 0, "open": 0, "disconnects": 0, "paused": 0, "pause_timeouts": 0}
        self.by_model: dict[str, int] = {}
        self._peers: set[tuple[str, int]] = set()
        self._release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/_stats":
            stats = {**self.stats, "connections": len(self._peers), "by_model": self.by_model}
            await self._reply(send, 200, _encoder.encode(stats))
            return
        self._peers.add(tuple(scope["client"]))
        if method == "POST" and path == "/_release":
            self._release.set()
            await self._reply(send, 200, b"{}")
        elif method == "GET" and path.endswith("/models"):
            names = ["fake-model", "fake-echo", "fake-slow", "fake-stall", "fake-tools", "fake-midstream-error"]
            names += ["fake-transcript", "fake-xml", "fake-xml-pause", "fake-roo"]
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names]
            await self._reply(send, 200, _encoder.encode({"object": "list", "data": data}))
        elif method == "POST" and path.endswith("/chat/completions"):
            authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
            await self._chat(receive, send, authorization)
        else:
            await self._reply(send, 404, _error(404, f"no route {method} {path}"))

    async def _reply(self, send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
        headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req_fake"), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _chat(self, receive: Receive, send: Send, authorization: str) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.stats["requests"] += 1
        try:
            request = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            await self._reply(send, 400, _error(400, f"bad request: {exc}"))
            return
        model = request.model
        self.by_model[model] = self.by_model.get(model, 0) + 1
        if model.startswith("fake-error-"):
            status = int(model.removeprefix("fake-error-"))
            extra = [(b"retry-after", b"1")] if status == 429 else []
            await self._reply(send, status, _error(status, f"fake upstream error {status}"), extra)
            return
        if model.startswith("fake-leak-"):
            status = int(model.removeprefix("fake-leak-"))
            leak = f"Incorrect API key provided: {authorization.removeprefix('Bearer ')}. Check your key."
            await self._reply(send, status, _error(status, leak))
            return
        if model == "fake-slow":
            await asyncio.sleep(self.settings.slow_first_token_s)
        prompt_tokens = sum(len(m.text().split()) for m in request.messages)
        if request.stream:
            await self._stream(request, prompt_tokens, receive, send)
        else:
            await self._complete(request, prompt_tokens, send)

    def _pieces(self, request: _Request) -> list[str]:
        if request.model in ("fake-xml", "fake-xml-pause"):
            trigger = next((m.group(0) for msg in request.messages if (m := _TRIGGER.search(msg.text()))), None)
            if trigger is None:
                return ["No tools."]
            call = '<function_calls>\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'
            pieces = ["Checking.", f"\n{trigger}\n", call[:30], call[30:], "</invoke>\n</function_calls>"]
            if request.model == "fake-xml-pause":
                second = '<invoke name="get_weather"><parameter name="city">Berlin</parameter></invoke>'
                pieces[-1:] = ["</invoke>", _PAUSE, "\n", second, "\n</function_calls>"]
            return pieces
        if request.model == "fake-roo":
            asked = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
            reply = next((text for word, text in ROO_REPLIES.items() if word in asked), ROO_REPLIES["read"])
            return [reply[i : i + 9] for i in range(0, len(reply), 9)]
        if request.model == "fake-transcript":
            return [" | ".join(message.transcript() for message in request.messages)]
        if request.model == "fake-echo":
            text = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
            return [text[i : i + 8] for i in range(0, len(text), 8)]
        n = self.settings.chunks
        return [f"chunk{i}" + (" " if i < n - 1 else "") for i in range(n)]

    def _base(self, request: _Request) -> dict[str, Any]:
        return {"id": "chatcmpl-fake", "created": int(time.time()), "model": request.model}

    async def _complete(self, request: _Request, prompt_tokens: int, send: Send) -> None:
        if request.model == "fake-tools" and request.tools:
            function = request.tools[0].function
            call = {
                "id": "call_fake",
                "type": "function",
                "function": {"name": function.name, "arguments": _args(function)},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish, completion = "tool_calls", 3
        else:
            pieces = [piece for piece in self._pieces(request) if piece != _PAUSE]
            message, finish, completion = {"role": "assistant", "content": "".join(pieces)}, "stop", len(pieces)
        body = {
            **self._base(request),
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(prompt_tokens, completion),
        }
        await self._reply(send, 200, _encoder.encode(body))

    def _chunks(self, request: _Request) -> tuple[list[dict[str, Any]], str]:
        if request.model == "fake-tools" and request.tools:
            function = request.tools[0].function
            first = {
                "index": 0,
                "id": "call_fake",
                "type": "function",
                "function": {"name": function.name, "arguments": ""},
            }
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [first]}]
            arguments = _args(function)
            for fragment in (arguments[:6], arguments[6:13], arguments[13:]):
                deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
            return deltas, "tool_calls"
        pieces = self._pieces(request)
        return [{"role": "assistant", "content": ""}, *({"content": piece} for piece in pieces)], "stop"

    async def _stream(self, request: _Request, prompt_tokens: int, receive: Receive, send: Send) -> None:
        self.stats["streams"] += 1
        self.stats["open"] += 1
        gone = asyncio.Event()

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        listener = asyncio.create_task(listen())
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", b"req_fake"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        usage_null = {"usage": None} if request.stream_options and request.stream_options.include_usage else {}
        base = {**self._base(request), "object": "chat.completion.chunk"}

        async def chunk(payload: dict[str, Any], more: bool = True) -> None:
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + _encoder.encode(payload) + b"\n\n",
                    "more_body": more,
                }
            )

        try:
            deltas, finish = self._chunks(request)
            for number, delta in enumerate(deltas):
                if delta.get("content") == _PAUSE:
                    await self._pause()
                    continue
                if self.settings.chunk_delay_s and number:
                    # Waiting on the disconnect itself, so a cancelled call is seen the moment it ends.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), self.settings.chunk_delay_s)
                if gone.is_set():
                    self.stats["disconnects"] += 1
                    return
                await chunk(
                    {
                        **base,
                        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
                        **usage_null,
                    }
                )
                if request.model == "fake-stall" and number == 2:
                    await gone.wait()
                    self.stats["disconnects"] += 1
                    return
                if request.model == "fake-midstream-error" and number == 3:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
            await chunk(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
                    **usage_null,
                }
            )
            if usage_null:
                await chunk({**base, "choices": [], "usage": _usage(prompt_tokens, len(deltas) - 1)})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        finally:
            self.stats["open"] -= 1
            listener.cancel()

    async def _pause(self) -> None:
        self.stats["paused"] += 1
        try:
            await asyncio.wait_for(self._release.wait(), _PAUSE_MAX_S)
        except TimeoutError:
            self.stats["pause_timeouts"] += 1
        finally:
            self.stats["paused"] -= 1
            self._release.clear()


def create_app(settings: FakeUpstreamSettings) -> FakeUpstream:
    return FakeUpstream(settings)


def main() -> None:
    parser = argument_parser()
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    settings = FakeUpstreamSettings(chunks=args.chunks, chunk_delay_s=args.chunk_delay)
    serve(create_app(settings), host=args.host, port=args.port)


class RunningFakeUpstream(FakeProcess):
    """The fake as a subprocess; ``base_url`` ends in ``/v1``."""

    def __init__(self, *, chunks: int = 20, chunk_delay_s: float = 0.0) -> None:
        super().__init__("tests.fakes.openai_upstream", ["--chunks", str(chunks), "--chunk-delay", str(chunk_delay_s)])

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


if __name__ == "__main__":
    main()
