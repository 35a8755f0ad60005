"""Identifiers: random, URL-safe, and prefixed the way OpenAI's are."""

from __future__ import annotations

import os

__all__ = ("new_call_id", "new_generation_id", "new_request_id", "new_response_id")


def new_generation_id() -> str:
    """A 24-hex-digit id; it names the job, the event log and the client-visible ids."""
    return os.urandom(12).hex()


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def new_call_id() -> str:
    return "call_" + os.urandom(12).hex()


def new_response_id() -> str:
    """A Responses API id; it is also the id of the generation that produces the response."""
    return "resp_" + os.urandom(12).hex()
