"""What the ledger keeps of one generation: the record a worker appends when the generation ends."""

from __future__ import annotations

import msgspec

__all__ = ("LedgerRecord", "decode_record", "encode_record")


class LedgerRecord(msgspec.Struct, kw_only=True):
    """One generation, however it ended; one row of the request log, keyed by ``id``."""

    id: str
    """The generation id (a Responses API response's id too): the row's primary key, so a record
    delivered twice is written once."""
    request_id: str
    at_ms: int
    """Unix time in milliseconds the worker started the generation."""
    key: str | None = None
    """The API key's name (keys mode)."""
    model: str
    """The model as the client named it."""
    channel: str | None = None
    """The channel and account of the last upstream attempt; ``None`` when none was made."""
    account: str | None = None
    client: str = ""
    """The client's user agent (coding agents and SDKs name themselves there)."""
    session_id: str | None = None
    outcome: str
    """``completed``, ``failed``, ``cancelled``, ``superseded``, ``orphaned``, ``shutdown``, ``abandoned``…"""
    status: int
    """The HTTP status the client got or would have got: 200, or the error's."""
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False
    """The tokens were estimated from the text: the upstream reported none."""
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    """Time to the first output, from the worker's start; ``None`` when nothing was output."""
    total_ms: float = 0.0
    attempts: int = 0
    """Upstream calls made; each beyond the first is a failover."""
    request_body: str | None = None
    """The request's messages as JSON, only with ``[ledger] store_bodies``, cut at the size cap."""
    output: str | None = None
    """The text output, only with ``[ledger] store_bodies``, cut at the size cap."""

    @property
    def failovers(self) -> int:
        return max(0, self.attempts - 1)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LedgerRecord)


def encode_record(record: LedgerRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> LedgerRecord:
    return _decoder.decode(data)
