"""The one request a worker runs, whatever API the client used.

A :class:`GenerationRequest` is built by an API adapter, travels through the queue, and is all a provider
sees. JSON-valued options the gateway does not interpret (a tool's parameter schema, ``response_format``)
travel as :class:`msgspec.Raw`, still encoded, so nothing untyped flows through the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from shared.usage import Billing

__all__ = (
    "CacheControl",
    "ClientInfo",
    "ContentPart",
    "FunctionTool",
    "GenerationRequest",
    "ImagePart",
    "Message",
    "Role",
    "Sampling",
    "SessionRef",
    "TextPart",
    "Thinking",
    "ToolCall",
    "ToolChoice",
    "decode_request",
    "encode_request",
)

Role = Literal["system", "user", "assistant", "tool"]


class CacheControl(msgspec.Struct):
    """A prompt-cache breakpoint (Anthropic's ``cache_control``); backends without prompt caching ignore it."""

    type: Literal["ephemeral"] = "ephemeral"
    ttl: str | UnsetType = UNSET
    """``5m`` or ``1h``; left out, the upstream's default."""


class TextPart(msgspec.Struct, tag="text", omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None


class ImagePart(msgspec.Struct, tag="image"):
    url: str
    """An ``https:`` or ``data:`` URL."""
    detail: str | None = None


ContentPart = TextPart | ImagePart


class ToolCall(msgspec.Struct):
    """A call the assistant made, as it appears in the conversation history."""

    id: str
    name: str
    arguments: str
    """The arguments as a JSON text, exactly as the model produced them."""


class Thinking(msgspec.Struct, omit_defaults=True):
    """A reasoning block of an assistant turn, kept so a backend that signed it can be sent it back unchanged."""

    text: str = ""
    signature: str = ""
    redacted: str = ""
    """The encrypted data of a redacted thinking block (then ``text`` is empty)."""


class Message(msgspec.Struct):
    role: Role
    content: list[ContentPart] = msgspec.field(default_factory=list)
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    thinking: list[Thinking] = msgspec.field(default_factory=list)
    """An assistant turn's reasoning, before its text and calls; only backends that can take it back use it."""
    is_error: bool = False
    """A tool result that reports the tool's failure."""

    def text(self) -> str:
        """The message's text parts joined; images are left out."""
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class FunctionTool(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: msgspec.Raw | UnsetType = UNSET
    """The JSON Schema of the arguments, kept encoded."""
    strict: bool | None = None


class ToolChoice(msgspec.Struct):
    mode: Literal["none", "auto", "required", "function"]
    name: str | None = None
    """The forced function's name when ``mode`` is ``function``."""


class Sampling(msgspec.Struct):
    """Generation options; ``None`` means the upstream's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: msgspec.Raw | UnsetType = UNSET
    """An OpenAI Chat ``response_format`` object, passed on as it came."""
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    """Extended thinking's token budget (Anthropic ``thinking.budget_tokens``); ``None``: thinking off."""
    parallel_tool_calls: bool | None = None
    user: str | None = None


_IDENTIFYING_HEADERS = ("x-title", "http-referer", "x-kilocode-version", "x-cline-version", "x-stainless-lang")
_MAX_HEADER = 256


class ClientInfo(msgspec.Struct):
    """Who sent the request, as its headers say: coding agents and SDKs name themselves there."""

    user_agent: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """The request's other identifying headers (X-Title, HTTP-Referer, ...), by lower-case name."""

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ClientInfo:
        found = {name: value[:_MAX_HEADER] for name in _IDENTIFYING_HEADERS if (value := headers.get(name))}
        return cls(headers.get("user-agent", "")[:_MAX_HEADER], found)


class SessionRef(msgspec.Struct, frozen=True):
    """The session a generation belongs to, as the API resolved it and the execution gate admitted it."""

    id: str
    fence: int
    """The gate's fencing token for this run: higher means newer; 0 when the run was not gated."""
    owner: str = ""
    """Digest of the client's API key: replies are bound to sessions per key."""
    zero_width: bool = False
    """Append the session id to the reply in zero-width characters."""


class GenerationRequest(msgspec.Struct):
    id: str
    """The generation id: names the job, its event log and the ids the client sees."""
    request_id: str
    """The ``x-request-id`` of the HTTP request that created it, for logs end to end."""
    model: str
    """The model name the client asked for; the worker's router resolves it to a channel."""
    messages: list[Message]
    reply_to: str
    """The pub/sub channel of the API instance holding the client's connection."""
    created: int
    """Unix time (seconds) the request was accepted."""
    tools: list[FunctionTool] = msgspec.field(default_factory=list)
    tool_choice: ToolChoice | None = None
    sampling: Sampling = msgspec.field(default_factory=Sampling)
    client: ClientInfo = msgspec.field(default_factory=ClientInfo)
    session: SessionRef | None = None
    billing: Billing | None = None
    """The API key the generation's usage is charged to (keys mode); the worker records it at the end."""
    retain_s: int | None = None
    """How long to keep the event log after the last event; ``None`` is the relay's default. Stored
    responses are replayed from the log, so it lives as long as they do."""
    detached: bool = False
    """Runs to its end with nobody listening (a background response), even if its API instance dies."""
    traceparent: str | None = None
    """The W3C trace context of the API's request span, when tracing is on: the worker's spans join it."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(GenerationRequest)


def encode_request(request: GenerationRequest) -> bytes:
    return _encoder.encode(request)


def decode_request(data: bytes) -> GenerationRequest:
    return _decoder.decode(data)
