"""Decoding a request body into its wire struct, with OpenAI-shaped 400s for every way it can be wrong."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from shared.errors import InvalidRequest

__all__ = ("decode_body",)

T = TypeVar("T")


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    if not body.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", param=_param(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


def _param(message: str) -> str | None:
    # msgspec says "... - at `$.messages[0].role`"; OpenAI's param is that path without "$.".
    _, sep, path = message.rpartition("at `$.")
    return path.rstrip("`") if sep else None
