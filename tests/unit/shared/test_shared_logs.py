"""Log records in text and JSON, stamped with the request and generation ids of their context."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:], root.level = handlers, level


def _emit(stream: io.StringIO, style: str, **extra: object) -> str:
    logs.configure_logging("info", style)  # type: ignore[arg-type]
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)

    def inside() -> None:
        logs.request_id.set("req_1")
        logs.generation_id.set("gen_1")
        logging.getLogger("aiapi.test").info("hello %s", "there", extra=extra)

    contextvars.copy_context().run(inside)
    logging.getLogger("aiapi.test").warning("outside")
    return stream.getvalue()


def test_json_lines_carry_ids_extra_fields_and_never_fail_on_odd_values(captured: io.StringIO) -> None:
    first, second = _emit(captured, "json", status=200, odd=object()).splitlines()
    inside, outside = json.loads(first), json.loads(second)
    assert inside["msg"] == "hello there" and inside["level"] == "info" and inside["logger"] == "aiapi.test"
    assert (inside["request_id"], inside["generation_id"], inside["status"]) == ("req_1", "gen_1", 200)
    assert inside["odd"].startswith("<object") and inside["ts"].endswith("Z")
    assert "request_id" not in outside and "generation_id" not in outside, "no ids outside a request"


def test_text_lines_show_the_ids_in_brackets(captured: io.StringIO) -> None:
    first, second = _emit(captured, "text").splitlines()
    assert "aiapi.test [req=req_1 gen=gen_1]: hello there" in first
    assert "aiapi.test: outside" in second
