"""The OpenAPI document, served at ``GET /schema/openapi.json``.

The routes read their bodies themselves (:mod:`api.intake.decoding`, so that every malformed body gets OpenAI's
error shape) and answer with encoded bytes, so Litestar sees neither what they accept nor what they send.
Each route names those wire types with ``operation_class=documented(...)``, and :func:`openapi_document`
puts them into Litestar's document (paths and parameters) as msgspec's JSON Schemas: made from the very
types the handlers decode and encode with, they say exactly what is accepted and sent. The document is
built on its first request, so serving it costs the other routes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from importlib.metadata import version
from typing import Any, ClassVar, NamedTuple, cast

import msgspec
from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, Operation, SecurityScheme

from shared.errors import ErrorBody

__all__ = ("EventStream", "documented", "openapi_config", "openapi_document")

_REF = "#/components/schemas/{name}"
_JSON = "application/json"
_METHODS = ("get", "put", "post", "delete", "patch")


class EventStream(NamedTuple):
    """How a route streams instead, as server-sent events: each event's ``data`` is JSON of one of ``events``."""

    when: str
    """The request that asks for the stream, e.g. ``"`stream: true`"``."""
    events: tuple[Any, ...]
    last: str | None = None
    """The ``data`` of a final event that is not JSON, e.g. ``"[DONE]"``."""


class _Documented(Operation):
    """An operation whose body and answers are wire types; :func:`openapi_document` writes their schemas."""

    body: ClassVar[Any] = None
    answers: ClassVar[Mapping[int, Any]] = {}
    status: ClassVar[int] = 200
    stream: ClassVar[EventStream | None] = None
    error: ClassVar[Any] = ErrorBody


def documented(
    answer: Any,
    *,
    body: Any = None,
    status: int = 200,
    stream: EventStream | None = None,
    also: Mapping[int, Any] | None = None,
    error: Any = ErrorBody,
) -> type[Operation]:
    """The ``operation_class`` of a route that accepts ``body`` and answers ``answer`` with ``status``.

    ``stream`` says when and how the answer is an event stream instead; ``also`` adds answers with other
    statuses. Any other 4xx and 5xx answer is an ``error``: in OpenAI's shape unless the front door has its own.
    """
    namespace = {
        "body": body,
        "answers": {status: answer, **(also or {})},
        "status": status,
        "stream": stream,
        "error": error,
    }
    return cast("type[Operation]", type("Documented", (_Documented,), namespace))


def openapi_document(app: Litestar) -> dict[str, Any]:
    """Litestar's document of ``app``, with the request bodies and answers of its documented routes."""
    openapi = app.openapi_schema
    document = openapi.to_schema()
    operations = [
        (path, method, operation)
        for path, item in (openapi.paths or {}).items()
        for method in _METHODS
        if isinstance(operation := getattr(item, method), _Documented)
    ]
    wire_types = list(
        dict.fromkeys(
            [ErrorBody]
            + [op.error for _, _, op in operations]
            + [op.body for _, _, op in operations if op.body is not None]
            + [answer for _, _, op in operations for answer in op.answers.values()]
            + [event for _, _, op in operations if op.stream is not None for event in op.stream.events]
        )
    )
    schemas, components = msgspec.json.schema_components(wire_types, ref_template=_REF)
    schema_of = dict(zip(wire_types, schemas, strict=True))
    for path, method, operation in operations:
        shape = "OpenAI's" if operation.error is ErrorBody else "the front door's"
        error = {
            "description": f"An error, in {shape} shape.",
            "content": {_JSON: {"schema": schema_of[operation.error]}},
        }
        target = document["paths"][path][method]
        if operation.body is not None:
            target["requestBody"] = {"required": True, "content": {_JSON: {"schema": schema_of[operation.body]}}}
        answers: dict[str, Any] = {}
        for status, answer in operation.answers.items():
            content = {_JSON: {"schema": schema_of[answer]}}
            description = HTTPStatus(status).phrase
            if operation.stream is not None and status == operation.status:
                content["text/event-stream"] = {"schema": _event_schema(operation.stream, schema_of)}
                description = f"{description}; with {operation.stream.when}, a stream of server-sent events"
            answers[str(status)] = {"description": description, "content": content}
        target["responses"] = {**answers, "4XX": error, "5XX": error}
    document["components"]["schemas"] = {**document["components"].get("schemas", {}), **components}
    return document


def _event_schema(stream: EventStream, schema_of: Mapping[Any, Any]) -> dict[str, Any]:
    """One event of the stream, as OpenAPI 3.2 reads it (Schemathesis reads 3.1 the same way)."""
    payload = {"anyOf": [schema_of[event] for event in stream.events]}
    data: dict[str, Any] = {"type": "string", "contentMediaType": _JSON, "contentSchema": payload}
    if stream.last is not None:
        data = {"type": "string", "anyOf": [{"const": stream.last}, data]}
    return {"type": "object", "required": ["data"], "properties": {"event": {"type": "string"}, "data": data}}


class _DocumentPlugin(JsonRenderPlugin):
    """Serves :func:`openapi_document`, built once."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = self.render_json(request, openapi_document(request.app))
        return self._rendered


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="aiapi",
        version=version("aiapi"),
        description="An OpenAI-compatible AI API gateway.",
        path="/schema",
        render_plugins=[_DocumentPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key (when `[access] mode` is `keys`), or the admin key on `/admin`.",
                )
            }
        ),
        security=[{}, {"bearer": []}],
    )
