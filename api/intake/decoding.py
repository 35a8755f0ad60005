"""Decoding a request body into its wire struct, with OpenAI-shaped 400s for every way it can be wrong."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from shared.errors import InvalidRequest

__all__ = ("check_body", "check_content_type", "decode_body")

T = TypeVar("T")

_SPARE_LEVELS = 32
"""Nesting a body must leave unused below the decoder's recursion limit. What it carries as Raw is decoded
again later a level or two deeper (the worker reads the queued request, a stored response nests the
request's options in its record) and perhaps on a deeper stack; without room to spare, a body nested just
under the limit would be accepted here and then fail there."""
_SHORT = 1024
"""A shorter body nests at most half as many levels (each takes two bytes), far from the limit: not checked."""
_skip = msgspec.json.Decoder(msgspec.Raw)
_OPEN, _CLOSE = b"[" * _SPARE_LEVELS, b"]" * _SPARE_LEVELS
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
"""A ``\\uD800``-``\\uDFFF`` escape that is not half of a pair: msgspec calls that "truncated" input."""


def check_body(body: bytes) -> None:
    """Refuse with a 400 a body no decoder may be given: not UTF-8, or nested too deeply to decode.

    Every body passes here before anything decodes any of it (:mod:`api.intake.bodies`), so that a
    decoder reading only a part of it (the model name, for admission) cannot fail where the full
    decoding would have refused it.
    """
    if not body.isascii():
        # msgspec checks the UTF-8 of strings only when it decodes them, not of the parts it keeps as Raw,
        # and says UnicodeDecodeError when it does; so the whole body is checked once, here.
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"The request body is not valid UTF-8 (byte {exc.start}).") from None
    if len(body) >= _SHORT:
        _check_depth(body)


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode a body into ``decoder``'s type; any way it is wrong is a 400."""
    if not body.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    check_body(body)  # a route's body passed it already; this keeps the promise for any other caller
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", param=_param(str(exc))) from exc
    except msgspec.DecodeError as exc:
        if lone := _LONE_SURROGATE.search(body):
            escape = lone.group().decode()
            raise InvalidRequest(
                f"The request body is not valid JSON: the string escape '{escape}' is half of a UTF-16 surrogate "
                "pair without its other half, which is not a character."
            ) from exc
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


def check_content_type(content_type: str | None) -> None:
    """Refuse a body labelled as anything but JSON (``application/json``, parameters allowed, or ``+json``).

    An unlabelled body is read as JSON: raw HTTP clients and probes send none, and nothing else could be
    meant. One labelled ``text/plain`` or as a form is not what the client thinks it sends.
    """
    if content_type is None:
        return
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise InvalidRequest(
        f"Unsupported Content-Type '{media}': send the request body as application/json.",
        code="unsupported_content_type",
    )


def _check_depth(body: bytes) -> None:
    """Refuse a body that would not decode with :data:`_SPARE_LEVELS` more levels around it."""
    try:
        _skip.decode(_OPEN + body + _CLOSE)
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None
    except msgspec.DecodeError:
        return  # not JSON at all: the decoding proper says what is wrong with it


def _param(message: str) -> str | None:
    # msgspec says "... - at `$.messages[0].role`"; OpenAI's param is that path without "$.".
    _, sep, path = message.rpartition("at `$.")
    return path.rstrip("`") if sep else None
