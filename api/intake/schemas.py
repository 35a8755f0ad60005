"""Checking the JSON Schemas a client sends (tool parameters, response formats) before anything is queued.

OpenAI answers a malformed schema with a 400 naming the parameter; passed on unchecked, it would fail
later and elsewhere (an upstream's 400 after a queue wait, the tool bridge's validator on the worker), or
be taken silently by an upstream that does not check. A schema must be a JSON object that passes its
draft's meta-schema (2020-12 unless it names another in ``$schema``). Clients resend the same tools with
every turn, so each distinct schema is checked once per process.
"""

from __future__ import annotations

import functools

import msgspec
from jsonschema import exceptions as jsonschema_exceptions  # type: ignore[import-untyped]
from jsonschema import validators as jsonschema_validators

from shared.errors import InvalidRequest

__all__ = ("check_schema",)

_CHECKED = 1024
"""Distinct schemas whose verdict is remembered."""


@functools.lru_cache(maxsize=_CHECKED)
def _problem(schema: bytes) -> str | None:
    try:
        value = msgspec.json.decode(schema)
    except msgspec.DecodeError:
        return "it is not valid JSON"
    if not isinstance(value, dict):
        return "a JSON Schema here must be an object"
    checker = jsonschema_validators.validator_for(value, default=jsonschema_validators.Draft202012Validator)
    try:
        checker.check_schema(value)
    except jsonschema_exceptions.SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.absolute_path) or "the schema"
        return f"{where}: {exc.message}"
    return None


def check_schema(schema: msgspec.Raw | msgspec.UnsetType | None, param: str) -> None:
    """Refuse ``schema`` (when given) with a 400 naming ``param`` unless it is a valid JSON Schema."""
    if isinstance(schema, msgspec.Raw) and (problem := _problem(bytes(schema))) is not None:
        raise InvalidRequest(f"Invalid schema for '{param}': {problem}.", param=param, code="invalid_schema")
