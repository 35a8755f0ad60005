"""The OpenAPI document: every route's request body and answers, as the wire types encode them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.chat.output import ChatCompletionBuilder, ChatStreamWriter
from api.openapi import openapi_document
from api.responses.objects import ResponseShell
from api.responses.projection import ResponseProjector
from shared.config import RedisConfig, Settings
from shared.errors import InvalidRequest
from shared.events import Finished, TextDelta, Usage

BODIES = {
    ("/v1/chat/completions", "post"): "ChatCompletionRequest",
    ("/v1/responses", "post"): "CreateResponse",
    ("/v1/messages", "post"): "MessagesBody",
    ("/v1/messages/count_tokens", "post"): "CountTokensBody",
    ("/admin/channels/{name}", "put"): None,  # a union of the channel types, inline
    ("/admin/channels/{name}/accounts/{account}", "put"): "AccountConfig",
    ("/admin/keys", "post"): "KeyPolicy",
    ("/admin/keys/{name}", "patch"): "KeyChanges",
    ("/admin/prices/{model}", "put"): "Price",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # The schema route needs no Redis, so the app serves it without its lifespan.
    app = create_app(Settings(redis=RedisConfig(url="redis://127.0.0.1:1/0")))
    reply = TestClient(app).get("/schema/openapi.json")
    assert reply.status_code == 200
    served: dict[str, Any] = reply.json()
    assert served == json.loads(json.dumps(openapi_document(app)))
    return served


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for inner in value.values():
            yield from _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner)


def _validate(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the document, its ``$ref``s resolved in the document's components."""
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(instance)


def test_routes_that_take_a_body_document_it(document: dict[str, Any]) -> None:
    with_body = {(path, method) for path, method, op in _operations(document) if "requestBody" in op}
    assert {(path.replace("/chaynsapi", ""), method) for path, method in with_body} == set(BODIES)
    for (path, method), name in BODIES.items():
        body = document["paths"][path][method]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert body["required"] is True
        assert schema.get("$ref") == (name and f"#/components/schemas/{name}")


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert {ref.removeprefix("#/components/schemas/") for ref in _refs(document)} <= set(schemas)


def test_every_operation_answers_errors_in_its_front_doors_shape(document: dict[str, Any]) -> None:
    error = {"$ref": "#/components/schemas/ErrorBody"}
    anthropic = {"$ref": "#/components/schemas/AnthropicError"}
    for path, _method, operation in _operations(document):
        for status in ("4XX", "5XX"):
            expected = anthropic if "/messages" in path else error
            assert operation["responses"][status]["content"]["application/json"]["schema"] == expected
    body = msgspec.json.decode(msgspec.json.encode(InvalidRequest("no", param="model").body()))
    _validate(document, error, body)
    with pytest.raises(jsonschema.ValidationError):
        _validate(document, error, {"detail": "no", "status_code": 400})


def test_request_schemas_take_real_requests_and_refuse_what_the_adapters_refuse(document: dict[str, Any]) -> None:
    chat = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    _validate(document, chat, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    for wrong in ({"model": "m", "messages": []}, {"model": "", "messages": [{"role": "user", "content": "hi"}]}):
        with pytest.raises(jsonschema.ValidationError):
            _validate(document, chat, wrong)
    create = document["paths"]["/v1/responses"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    _validate(document, create, {"model": "m", "input": [{"role": "user", "content": "hi"}]})
    _validate(document, create, {"model": "m", "previous_response_id": "resp_1"})
    for wrong in ({"model": "m"}, {"input": "hi"}, {"model": "m", "input": "hi", "background": True, "store": False}):
        with pytest.raises(jsonschema.ValidationError):
            _validate(document, create, wrong)


def test_answers_validate_against_their_schemas(document: dict[str, Any]) -> None:
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    builder = ChatCompletionBuilder(completion_id="chatcmpl-1", model="m", created=1)
    builder.feed(TextDelta("hi"))
    completion = builder.feed(Finished("stop"))
    _validate(document, chat["application/json"]["schema"], msgspec.json.decode(msgspec.json.encode(completion)))
    writer = ChatStreamWriter(completion_id="chatcmpl-1", model="m", created=1, include_usage=True)
    stream = writer.opening() + writer.feed(TextDelta("hi")) + writer.feed(Usage(1, 1)) + writer.feed(Finished("stop"))
    events = [{"data": frame.removeprefix(b"data: ").decode()} for frame in stream.split(b"\n\n") if frame]
    for event in events:
        _validate(document, chat["text/event-stream"]["schema"], event)
    payload = chat["text/event-stream"]["schema"]["properties"]["data"]["anyOf"][1]["contentSchema"]
    for event in events[:-1]:
        _validate(document, payload, json.loads(event["data"]))
    response = document["paths"]["/v1/responses/{response_id}"]["get"]["responses"]["200"]["content"]
    snapshot = ResponseProjector(ResponseShell(id="resp_1", created_at=1, model="m")).snapshot()
    _validate(document, response["application/json"]["schema"], msgspec.json.decode(msgspec.json.encode(snapshot)))
