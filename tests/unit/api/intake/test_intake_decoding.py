"""Decoding request bodies: any bytes at all become the wire struct or an OpenAI-shaped 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.admin.keys import KeyChanges
from api.intake.decoding import check_content_type, decode_body
from api.responses import request as adapter
from api.responses.store import StoredResponse
from shared.access_config import KeyPolicy
from shared.config import AccountConfig, ChannelConfig
from shared.errors import InvalidRequest
from shared.openai_chat import ChatCompletionRequest
from shared.openai_responses import CreateResponse
from tests.request_strategies import any_body, chat_bodies, response_bodies

T = TypeVar("T")

DECODERS: list[msgspec.json.Decoder[Any]] = [
    msgspec.json.Decoder(wire)
    for wire in (ChatCompletionRequest, CreateResponse, ChannelConfig, AccountConfig, KeyPolicy, KeyChanges)
]


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@given(body=st.one_of(any_body, chat_bodies, response_bodies))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_body_decodes_or_is_a_400(body: bytes) -> None:
    for decoder in DECODERS:
        try:
            decode_body(decoder, body)
        except InvalidRequest as error:
            assert error.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "\xed\xa0\x80", "messages": []}',
        b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}',
        b'{"model": "m", "messages": [], "response_format": {"type": "\xc3"}}',
    ],
    ids=["surrogate", "invalid byte", "inside a raw part"],
)
def test_invalid_utf8_is_a_400(body: bytes) -> None:
    # Regression: msgspec raised UnicodeDecodeError, a 500; inside a Raw part it was not even noticed.
    with pytest.raises(InvalidRequest, match="not valid UTF-8"):
        decode_body(DECODERS[0], body)


@pytest.mark.parametrize("where", ["messages", "response_format"])
def test_nesting_deeper_than_the_decoder_can_follow_is_a_400(where: str) -> None:
    # Regression: RecursionError, a 500.
    body = b'{"model": "m", "messages": [], "%s": %s}' % (where.encode(), _nested(100_000))
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        decode_body(DECODERS[0], body)


def _deepest_accepted(body: Callable[[int], bytes]) -> int:
    low, high = 1, 100_000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            decode_body(DECODERS[1], body(middle))
        except InvalidRequest:
            high = middle - 1
        else:
            low = middle
    return low


def _deeper(frames: int, call: Callable[[], T]) -> T:
    return call() if frames == 0 else _deeper(frames - 1, call)


def test_what_is_accepted_can_be_stored_and_read_back() -> None:
    # Regression: a body nested just under the limit was accepted, but its stored response, which holds
    # the request's tools two levels deeper, could not be decoded again: 500 on retrieving or continuing it.
    def body(levels: int) -> bytes:
        return b'{"model": "m", "input": "x", "tools": [{"type": "custom", "x": %s}]}' % _nested(levels)

    request = adapter.decode_create_response(body(_deepest_accepted(body)))
    shell = adapter.shell(request, response_id="resp_x", created_at=1, choice=None)
    stored = msgspec.json.encode(StoredResponse(shell=shell, owner="o", conversation=[], input_items=[]))
    read = _deeper(20, lambda: msgspec.json.decode(stored, type=StoredResponse))
    assert read.shell.tools == shell.tools


@pytest.mark.parametrize("body", [rb'{"model": "\ud800"}', rb'{"model": "a\udfffb"}', rb'{"model": "\ud83d\u0041"}'])
def test_a_lone_surrogate_escape_is_named_as_such(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="half of a UTF-16 surrogate pair") as caught:
        decode_body(msgspec.json.Decoder(ChatCompletionRequest), body)
    assert "truncated" not in caught.value.message


def test_a_surrogate_pair_is_one_character() -> None:
    decoded = decode_body(msgspec.json.Decoder(dict[str, str]), rb'{"s": "\ud83d\ude00"}')
    assert decoded == {"s": "\U0001f600"}


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "Application/JSON; charset=utf-8", "application/merge+json"]
)
def test_json_or_unlabelled_bodies_are_read(content_type: str | None) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", ""]
)
def test_bodies_labelled_as_anything_else_are_400(content_type: str) -> None:
    with pytest.raises(InvalidRequest, match="application/json") as caught:
        check_content_type(content_type)
    assert caught.value.code == "unsupported_content_type"
