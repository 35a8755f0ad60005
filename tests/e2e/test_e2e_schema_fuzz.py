"""Schemathesis against the gateway's own OpenAPI document, through real API and worker processes.

Every public ``/v1`` operation gets generated requests, valid and invalid by the document (positive and
negative mode), streaming and not. No answer may be a 5xx: the upstream is the local mock model, so a
500, 502, 503 or 504 is a bug here. Answers must also match the document (status, content type, body)
and invalid requests must be refused. Generation is derandomized, so every run sends the same requests.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

CONFIG = """
[[channels]]
name = "mock"
type = "mock"
models = ["mock-1"]
reply = "You said: {prompt}"
"""

MODEL = "mock-1"


def no_failed_generation(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """The mock model never fails: a 200 that carries an error (an error event, a failed response) is a bug too."""
    content_type = response.headers.get("content-type", [""])[0]
    if content_type.startswith("text/event-stream"):
        # SSE lines end at CR or LF only; str.splitlines would also split inside JSON strings (at U+2028, ...).
        lines = re.split(r"\r\n|\r|\n", response.text)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]
        failures = [event for event in events if "error" in event or event.get("type") == "response.failed"]
        assert not failures, f"the stream failed: {failures[0]}"
    elif response.status_code == 200 and content_type == "application/json":
        body = json.loads(response.text)
        assert not (body.get("object") == "response" and body.get("status") == "failed"), f"failed: {body['error']}"


CHECKS = [
    no_failed_generation,
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (method, path, mode, examples). Operations whose only parameter is a free string have no negative cases.
# DELETE comes last: it removes the responses the others read.
OPERATIONS = [
    ("POST", "/v1/chat/completions", POSITIVE, 300),
    ("POST", "/v1/chat/completions", NEGATIVE, 80),
    ("POST", "/v1/responses", POSITIVE, 300),
    ("POST", "/v1/responses", NEGATIVE, 80),
    ("POST", "/v1/messages", POSITIVE, 200),
    ("POST", "/v1/messages", NEGATIVE, 80),
    ("POST", "/v1/messages/count_tokens", POSITIVE, 60),
    ("GET", "/v1/models", POSITIVE, 3),
    ("GET", "/v1/models/{model}", POSITIVE, 20),
    ("GET", "/v1/responses/{response_id}", POSITIVE, 60),
    ("GET", "/v1/responses/{response_id}", NEGATIVE, 40),
    ("GET", "/v1/responses/{response_id}/input_items", POSITIVE, 60),
    ("GET", "/v1/responses/{response_id}/input_items", NEGATIVE, 40),
    ("POST", "/v1/responses/{response_id}/cancel", POSITIVE, 30),
    ("GET", "/healthz", POSITIVE, 3),
    ("GET", "/readyz", POSITIVE, 3),
    ("DELETE", "/v1/responses/{response_id}", POSITIVE, 20),
]


@pytest.fixture(scope="module")
def fuzz_gateway(redis_url: str) -> Iterator[GatewayProcesses]:
    with GatewayProcesses(redis_url=redis_url, config_toml=CONFIG) as gateway:
        yield gateway


def _stored_responses(base_url: str) -> list[str]:
    """Ids of real responses for the path parameters: plain, background, continued, with a tool call."""
    bodies: list[dict[str, Any]] = [
        {"model": MODEL, "input": "hello"},
        {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
        {"model": MODEL, "input": "later", "background": True},
        {
            "model": MODEL,
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
            ],
        },
    ]
    ids: list[str] = []
    with httpx.Client(base_url=base_url, timeout=20) as http:
        for body in bodies:
            reply = http.post("/responses", json=body)
            assert reply.status_code == 200, reply.text
            ids.append(reply.json()["id"])
        continued = http.post("/responses", json={"model": MODEL, "input": "more", "previous_response_id": ids[0]})
        assert continued.status_code == 200, continued.text
        ids.append(continued.json()["id"])
    return ids


def _mostly(real: Any, generated: Any) -> st.SearchStrategy[Any]:
    """``real`` three times in four, else ``generated``."""
    return st.sampled_from([real, real, real, generated])


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: GatewayProcesses) -> schemathesis.BaseSchema:
    root = fuzz_gateway.base_url.removesuffix("/v1")
    schema = schemathesis.openapi.from_url(f"{root}/schema/openapi.json")
    known = _stored_responses(fuzz_gateway.base_url)

    # Random model names and ids end in a 404 before anything runs, and few generated requests ask for a
    # stream. So most cases name the served model and real responses, and many stream; the rest are as
    # generated. Only values that are valid already are replaced, so that negative cases stay invalid.
    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        if not isinstance(body, dict):
            return st.just(body)

        def real(previous_id: str, stream: bool) -> dict[str, Any]:
            out = {**body}
            if isinstance(body.get("model"), str) and body["model"]:
                out["model"] = MODEL
            if isinstance(body.get("previous_response_id"), str) and body["previous_response_id"]:
                out["previous_response_id"] = previous_id
            if body.get("stream") is None or isinstance(body["stream"], bool):
                out["stream"] = stream
            return out

        return st.builds(real, st.sampled_from(known), st.sampled_from([True, False])).flatmap(
            lambda r: _mostly(r, body)
        )

    @schema.hook
    def flatmap_path_parameters(context: schemathesis.HookContext, parameters: dict[str, Any] | None) -> Any:
        if parameters is not None and "response_id" in parameters:
            return st.sampled_from(known).flatmap(lambda id_: _mostly({**parameters, "response_id": id_}, parameters))
        if parameters is not None and "model" in parameters:
            return _mostly({**parameters, "model": MODEL}, parameters)
        return st.just(parameters)

    @schema.hook
    def flatmap_query(context: schemathesis.HookContext, query: dict[str, Any] | None) -> Any:
        if query is not None and isinstance(query.get("stream", False), bool):
            return st.sampled_from([{**query, "stream": True}, query])
        return st.just(query)

    return schema


def test_the_document_covers_the_public_routes(api_schema: schemathesis.BaseSchema) -> None:
    documented = {(op.method.upper(), op.path) for op in (result.ok() for result in api_schema.get_all_operations())}
    assert {(method, path) for method, path, _, _ in OPERATIONS} <= documented


@pytest.mark.parametrize(
    ("method", "path", "mode", "examples"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g, _ in OPERATIONS]
)
def test_no_server_errors_and_answers_match_the_document(
    api_schema: schemathesis.BaseSchema,
    fuzz_gateway: GatewayProcesses,
    method: str,
    path: str,
    mode: GenerationMode,
    examples: int,
) -> None:
    operation = api_schema[path][method]
    root = fuzz_gateway.base_url.removesuffix("/v1")
    statuses: Counter[str] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=root, checks=CHECKS, timeout=20)
        streamed = response.headers.get("content-type", [""])[0].startswith("text/event-stream")
        statuses[f"{response.status_code}{' stream' if streamed else ''}"] += 1

    try:
        run()
    finally:
        counts = dict(sorted(statuses.items()))
        print(f"{method} {path} [{mode.value}]: {sum(statuses.values())} requests, statuses {counts}")
