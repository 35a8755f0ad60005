"""A fake Anthropic Messages API over real HTTP, streaming exactly as the real one does (``event:`` + ``data:``).

``POST /v1/messages`` needs ``x-api-key`` equal to ``--api-key`` (else 401) and an ``anthropic-version``
header (else 400), each with Anthropic's error body. Like the real API it answers 400 when ``stream`` is not
true, ``max_tokens`` is missing, the first turn is not the user's, two turns of one role follow each other,
or a user turn's ``tool_result`` blocks do not come first or answer no ``tool_use`` of the turn before. By
``model``:

- ``claude-error-<status>``: that status with Anthropic's error body (``overloaded_error`` for 529,
  ``rate_limit_error`` plus ``retry-after: 1`` for 429)
- ``claude-tools``: a thinking block, ``Let me check.``, then a ``tool_use`` of the first tool (or the one
  ``tool_choice`` names) with input ``{"city": "Paris"}`` in three fragments; a plain reply without tools
- ``claude-echo``: the conversation it received as one text, entries joined by `` | ``: ``system:…``, then per
  turn ``role:`` and its blocks (text as is, ``tool_use(<id> <name> <input>)``,
  ``tool_result(<id>):<content>`` (``tool_result(<id> error)`` when ``is_error``),
  ``image(<source type> <media type or url>)``, ``thinking(<signature>)``, ``redacted_thinking``)
- ``claude-stream-error``: two text deltas, then an ``error`` event (``overloaded_error``)
- ``claude-incomplete``: two text deltas, then the body ends without ``message_stop``
- any other: ``Hello from the fake Claude.`` in five text deltas, cut to ``max_tokens`` deltas
  (``stop_reason: max_tokens``) when that is smaller

Usage: ``input_tokens`` = words of the system text and text blocks, ``cache_read_input_tokens`` = 4,
``cache_creation_input_tokens`` = 7 when a block carries ``cache_control`` (else 0), ``output_tokens`` =
deltas sent. ``system`` may be a string or text blocks.
``GET /_last`` returns the last ``/v1/messages`` body exactly as received.

    python -m tests.fakes.anthropic_upstream --port 0 [--api-key KEY]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from tests.fakes._serving import FakeProcess, argument_parser, serve

__all__ = ("CACHED_TOKENS", "CACHE_WRITTEN_TOKENS", "PLAIN_PIECES", "RunningAnthropicUpstream", "create_app")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PLAIN_PIECES = ["Hello", " from", " the", " fake", " Claude."]
CACHED_TOKENS = 4
CACHE_WRITTEN_TOKENS = 7
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
_ERROR_TYPES |= {429: "rate_limit_error", 529: "overloaded_error"}
_ERROR_MESSAGES = {429: "Number of request tokens has exceeded your rate limit", 529: "Overloaded"}


class _Source(msgspec.Struct):
    type: str
    media_type: str = ""
    url: str = ""


class _Block(msgspec.Struct):
    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw(b"{}")
    tool_use_id: str = ""
    content: str | list[_Block] | None = None
    source: _Source | None = None
    is_error: bool = False
    signature: str = ""
    cache_control: dict[str, str] | None = None

    def transcript(self) -> str:
        if self.type == "text":
            return self.text
        if self.type == "thinking":
            return f"thinking({self.signature})"
        if self.type == "tool_use":
            return f"tool_use({self.id} {self.name} {bytes(self.input).decode()})"
        if self.type == "tool_result":
            content = self.content
            inner = content if isinstance(content, str) else "".join(b.transcript() for b in content or ())
            return f"tool_result({self.tool_use_id}{' error' if self.is_error else ''}):{inner}"
        if self.type == "image" and self.source is not None:
            return f"image({self.source.type} {self.source.media_type or self.source.url})"
        return f"<{self.type}>"


class _Message(msgspec.Struct):
    role: str
    content: str | list[_Block]

    def blocks(self) -> list[_Block]:
        return [_Block("text", text=self.content)] if isinstance(self.content, str) else self.content


class _Tool(msgspec.Struct):
    name: str
    input_schema: msgspec.Raw


class _ToolChoice(msgspec.Struct):
    type: str
    name: str = ""


class _Request(msgspec.Struct):
    model: str
    messages: list[_Message]
    max_tokens: int | None = None
    stream: bool = False
    system: str | list[_Block] | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Request)


def _error_body(status: int, message: str) -> bytes:
    return _encoder.encode(
        {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}
    )


def _validate(request: _Request) -> None:
    if not request.stream:
        raise _Rejected(400, "this fake only streams: stream must be true")
    if request.max_tokens is None:
        raise _Rejected(400, "max_tokens: Field required")
    if not request.messages or request.messages[0].role != "user":
        raise _Rejected(400, "messages: the first message must use the user role")
    previous: _Message | None = None
    for number, message in enumerate(request.messages):
        if previous is not None and previous.role == message.role:
            raise _Rejected(400, f"messages.{number}: roles must alternate between user and assistant")
        blocks = message.blocks()
        results = [b.tool_use_id for b in blocks if b.type == "tool_result"]
        if any(b.type == "tool_result" for b in blocks[len(results) :]):
            raise _Rejected(400, f"messages.{number}: tool_result blocks must come first in the content")
        offered = {b.id for b in previous.blocks() if b.type == "tool_use"} if previous else set()
        if unknown := [i for i in results if i not in offered]:
            raise _Rejected(400, f"messages.{number}: unexpected tool_use_id {unknown[0]} in tool_result blocks")
        previous = message


def _event(payload: dict[str, Any]) -> bytes:
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(payload) + b"\n\n"


def _text_block(index: int, pieces: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
            for piece in pieces
        ),
        {"type": "content_block_stop", "index": index},
    ]


class FakeAnthropic:
    """The ASGI app."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.last = b"{}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/_last":
            await self._reply(send, 200, self.last)
        elif method == "POST" and path == "/v1/messages":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            await self._messages(headers, await self._body(receive), send)
        else:
            await self._reply(send, 404, _error_body(404, f"Not found: {method} {path}"))

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        body = b""
        while True:
            message = await receive()
            body += bytes(message.get("body", b""))
            if not message.get("more_body"):
                return body

    async def _reply(self, send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
        headers = [(b"content-type", b"application/json"), (b"request-id", b"req_fake"), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _messages(self, headers: dict[str, str], body: bytes, send: Send) -> None:
        self.last = body
        try:
            if headers.get("x-api-key") != self.api_key:
                raise _Rejected(401, "invalid x-api-key")
            if not headers.get("anthropic-version"):
                raise _Rejected(400, "anthropic-version: header is required")
            try:
                request = _decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise _Rejected(400, f"invalid request body: {exc}") from exc
            _validate(request)
            if request.model.startswith("claude-error-"):
                status = int(request.model.removeprefix("claude-error-"))
                raise _Rejected(status, _ERROR_MESSAGES.get(status, f"fake error {status}"))
        except _Rejected as rejected:
            extra = [(b"retry-after", b"1")] if rejected.status == 429 else []
            await self._reply(send, rejected.status, _error_body(rejected.status, str(rejected)), extra)
            return
        await self._stream(request, send)

    @staticmethod
    def _system(request: _Request) -> str:
        system = request.system or ""
        return system if isinstance(system, str) else "".join(block.text for block in system)

    def _events(self, request: _Request) -> tuple[list[dict[str, Any]], str | None, int]:
        """The content events, the stop reason (``None``: the stream breaks off) and the output tokens."""
        model = request.model
        if model == "claude-tools" and request.tools and (request.tool_choice or _ToolChoice("auto")).type != "none":
            choice = request.tool_choice
            name = choice.name if choice is not None and choice.type == "tool" else request.tools[0].name
            thinking: list[dict[str, Any]] = [
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}},
                {"type": "content_block_stop", "index": 0},
            ]
            tool = {"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {}}
            fragments = ["", '{"city', '": "Par', 'is"}']
            call = [
                {"type": "content_block_start", "index": 2, "content_block": tool},
                *(
                    {
                        "type": "content_block_delta",
                        "index": 2,
                        "delta": {"type": "input_json_delta", "partial_json": f},
                    }
                    for f in fragments
                ),
                {"type": "content_block_stop", "index": 2},
            ]
            return [*thinking, *_text_block(1, ["Let me check."]), *call], "tool_use", 12
        if model == "claude-echo":
            text = " | ".join(
                ([f"system:{self._system(request)}"] if request.system else [])
                + [f"{m.role}:" + " ".join(b.transcript() for b in m.blocks()) for m in request.messages]
            )
            pieces = [text[i : i + 16] for i in range(0, len(text), 16)]
            return _text_block(0, pieces), "end_turn", len(pieces)
        if model == "claude-stream-error":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return [*_text_block(0, PLAIN_PIECES[:2])[:3], error], None, 2
        if model == "claude-incomplete":
            return _text_block(0, PLAIN_PIECES[:2])[:3], None, 2
        limit = request.max_tokens or len(PLAIN_PIECES)
        pieces = PLAIN_PIECES[:limit]
        return _text_block(0, pieces), "end_turn" if len(pieces) == len(PLAIN_PIECES) else "max_tokens", len(pieces)

    async def _stream(self, request: _Request, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        words = len(self._system(request).split()) + sum(
            len(b.text.split()) for m in request.messages for b in m.blocks() if b.type == "text"
        )
        blocks = [
            *(request.system if isinstance(request.system, list) else ()),
            *(b for m in request.messages for b in m.blocks()),
        ]
        written = CACHE_WRITTEN_TOKENS if any(b.cache_control for b in blocks) else 0
        content, stop_reason, output_tokens = self._events(request)
        usage = {
            "input_tokens": words,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": CACHED_TOKENS,
            "output_tokens": 1,
        }
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": request.model}
        start = {
            "type": "message_start",
            "message": {**message, "stop_reason": None, "stop_sequence": None, "usage": usage},
        }
        events = [start, content[0], {"type": "ping"}, *content[1:]]
        if stop_reason is not None:
            delta = {"stop_reason": stop_reason, "stop_sequence": None}
            events += [
                {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}},
                {"type": "message_stop"},
            ]
        for payload in events:
            await send({"type": "http.response.body", "body": _event(payload), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def create_app(api_key: str) -> FakeAnthropic:
    return FakeAnthropic(api_key)


def main() -> None:
    parser = argument_parser()
    parser.add_argument("--api-key", default="sk-ant-fake")
    args = parser.parse_args()
    serve(create_app(args.api_key), host=args.host, port=args.port)


class RunningAnthropicUpstream(FakeProcess):
    """The fake as a subprocess; ``base_url`` is the API root, as ``AnthropicChannel.base_url`` expects."""

    def __init__(self, *, api_key: str = "sk-ant-fake") -> None:
        super().__init__("tests.fakes.anthropic_upstream", ["--api-key", api_key])
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return self.root_url


if __name__ == "__main__":
    main()
