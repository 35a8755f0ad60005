"""Input OpenAI refuses is refused here too, through the real processes, with OpenAI's error shape and the
parameter named: bounds on output tokens, junk JSON Schemas, ``n`` on Responses, non-JSON bodies, lone
surrogates, and a URL too long for the HTTP parser."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import openai
import pytest

from tests.harness import GatewayProcesses

pytestmark = pytest.mark.e2e

USER: Any = [{"role": "user", "content": "hi"}]
JUNK_TOOL: Any = [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_completion_tokens": 2**64}, "max_completion_tokens"),
        ({"tools": JUNK_TOOL}, "tools[0].function.parameters"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": 7}}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_chat_input_openai_refuses_is_400_naming_the_parameter(
    client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock-1", messages=USER, **options)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"max_output_tokens": -5}, "max_output_tokens"),
        ({"extra_body": {"n": 2}}, "n"),
        ({"text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": 7}}}}, "text.format.schema"),
    ],
)
def test_responses_input_openai_refuses_is_400_naming_the_parameter(
    client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock-1", input="hi", **options)
    assert caught.value.param == param


def _error(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 400 and reply.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


def test_a_body_labelled_as_plain_text_is_refused(gateway: GatewayProcesses) -> None:
    body = b'{"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}'
    url = f"{gateway.base_url}/chat/completions"
    refused = httpx.post(url, content=body, headers={"content-type": "text/plain"}, timeout=10)
    assert _error(refused)["code"] == "unsupported_content_type"
    labelled = httpx.post(url, content=body, headers={"content-type": "application/json; charset=utf-8"}, timeout=10)
    assert labelled.status_code == 200


def test_a_lone_surrogate_is_named(gateway: GatewayProcesses) -> None:
    body = rb'{"model": "mock-1", "messages": [{"role": "user", "content": "\ud800"}]}'
    reply = httpx.post(
        f"{gateway.base_url}/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert "surrogate" in _error(reply)["message"]


def test_a_url_too_long_to_parse_gets_openais_error_shape(gateway: GatewayProcesses) -> None:
    # httpx itself refuses such a URL, so the request goes over a plain socket.
    url = httpx.URL(gateway.base_url)
    with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
        sock.sendall(b"GET /v1/models?pad=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: gateway\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    reply = httpx.Response(int(head.split(b" ")[1]), headers=headers, content=body)
    assert _error(reply)["code"] == "invalid_http_request"
