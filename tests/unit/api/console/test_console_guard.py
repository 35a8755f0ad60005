"""Where the console sends a browser after login, and when it marks its cookie Secure."""

from __future__ import annotations

import pytest

from api.console.guard import safe_next


@pytest.mark.parametrize(
    "target",
    [None, "", "https://evil.example/console", "//evil.example", "/\\evil.example", "/consolex", "javascript:x", "/v1"],
)
def test_anything_but_a_console_path_goes_to_the_overview(target: str | None) -> None:
    assert safe_next(target) == "/console"


@pytest.mark.parametrize("target", ["/console", "/console/keys", "/console/requests/abc"])
def test_a_console_path_is_kept(target: str) -> None:
    assert safe_next(target) == target
