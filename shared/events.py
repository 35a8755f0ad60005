"""What a worker reports about a generation, in order, to the API that holds the client.

Each event travels inside an :class:`Envelope` that names the generation and numbers the event from 0.
The same encoded envelope is appended to the generation's event log (a Redis stream) and published on
the API instance's relay channel, so the API can rebuild the exact sequence from the log whenever pub/sub
drops something. ``Finished`` and ``Failed`` are terminal: nothing follows them.
"""

from __future__ import annotations

import msgspec

from shared.errors import ErrorInfo

__all__ = (
    "TERMINAL_EVENTS",
    "Envelope",
    "Failed",
    "Finished",
    "GenerationEvent",
    "Started",
    "TextDelta",
    "ThinkingDelta",
    "ToolCallDelta",
    "ToolCallStarted",
    "Usage",
    "decode_batch",
    "decode_envelope",
    "encode_envelope",
)


class Started(msgspec.Struct, tag="started"):
    """A worker picked the generation up."""

    worker: str


class TextDelta(msgspec.Struct, tag="text"):
    text: str


class ThinkingDelta(msgspec.Struct, tag="thinking", omit_defaults=True):
    """A fragment of the model's visible reasoning, or the signature that closes a thinking block.

    Consecutive deltas make one block; a delta with ``redacted`` is a whole redacted block of its own.
    """

    text: str = ""
    signature: str = ""
    redacted: str = ""


class ToolCallStarted(msgspec.Struct, tag="tool_call"):
    """The model began tool call number ``index`` (0-based within this generation)."""

    index: int
    call_id: str
    name: str


class ToolCallDelta(msgspec.Struct, tag="tool_args"):
    """A fragment of tool call ``index``'s JSON arguments."""

    index: int
    arguments: str


class Usage(msgspec.Struct, tag="usage"):
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    """Prompt tokens read from the prompt cache (counted in ``input_tokens`` too)."""
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    """Prompt tokens written to the prompt cache (counted in ``input_tokens`` too)."""


class Finished(msgspec.Struct, tag="finished"):
    finish_reason: str
    """``stop``, ``length``, ``tool_calls`` or ``content_filter``."""
    finished_at: int = 0
    """Unix time (seconds); the runner stamps it, so every replay of the log reports the same moment."""
    stop_sequence: str | None = None
    """The stop sequence that ended the output, when the upstream says which."""


class Failed(msgspec.Struct, tag="failed"):
    error: ErrorInfo


GenerationEvent = Started | TextDelta | ThinkingDelta | ToolCallStarted | ToolCallDelta | Usage | Finished | Failed

TERMINAL_EVENTS = (Finished, Failed)


class Envelope(msgspec.Struct, array_like=True):
    generation_id: str
    seq: int
    event: GenerationEvent


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)
_batch_decoder = msgspec.json.Decoder(list[Envelope])


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode_envelope(data: bytes) -> Envelope:
    return _envelope_decoder.decode(data)


def decode_batch(data: bytes) -> list[Envelope]:
    """Decode a published batch: a JSON array of encoded envelopes."""
    return _batch_decoder.decode(data)
