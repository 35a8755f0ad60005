"""Credentials scrubbed from upstream texts."""

from __future__ import annotations

import pytest

from worker.redaction import scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: sk-proj-abc123DEF456.", "Incorrect API key provided: [redacted]."),
        ("bad key sk-ant-api03-xyzXYZ_0123-abc", "bad key [redacted]"),
        ("header was Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9", "header was Authorization: Bearer [redacted]"),
        ('{"api_key": "hunter2hunter2"}', '{"api_key": "[redacted]"}'),
        ("x-api-key=abcdef123", "x-api-key=[redacted]"),
        ("The model `gpt-4o` does not exist", "The model `gpt-4o` does not exist"),
        ("task-list skills", "task-list skills"),
    ],
)
def test_credential_shapes_are_redacted_and_other_text_kept(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_the_channels_own_keys_are_redacted_whatever_their_shape() -> None:
    # The longer key goes first, so a key containing another is never half replaced.
    secrets = ["plainKEY1", "plainKEY12", None, ""]
    assert scrub("rejected: plainKEY12 (and plainKEY1x)", secrets) == "rejected: [redacted] (and [redacted]x)"
