"""Logging set-up: plain text or one JSON object per line, both carrying the request id end to end.

The API sets :data:`request_id` (and :data:`generation_id` once known) for the task serving a request;
the worker sets both from the job. Every record logged in that context is stamped with them, so one
``x-request-id`` finds the API's and the worker's lines alike.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any, Literal

import msgspec

__all__ = ("JsonFormatter", "configure_logging", "generation_id", "request_id")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiapi_request_id", default=None)
generation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiapi_generation_id", default=None)

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s%(context)s: %(message)s"
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "context",
    "request_id",
    "generation_id",
}
_encoder = msgspec.json.Encoder(enc_hook=repr)  # an odd ``extra=`` value is logged, never raised


class _ContextFilter(logging.Filter):
    """Copies the context's ids onto each record (``record.request_id``, ``record.generation_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request = request_id.get()
        record.generation_id = generation = generation_id.get()
        pairs = (("req", request), ("gen", generation))
        ids = [f"{name}={value}" for name, value in pairs if value]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, any ``extra=`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for name in ("request_id", "generation_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES and name not in entry and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str, style: Literal["text", "json"]) -> None:
    """Route the root logger to stderr in ``style``; called once per process by the CLI."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if style == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every start at INFO (its plugins, its DDL mode); the ledger logs the outcome itself.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
