"""What ``aiapi up`` prints about the console, and the admin key it makes in open mode."""

from __future__ import annotations

import asyncio
import re

import fakeredis
import pytest

from api.console import launch
from api.console.auth import ConsoleAuth
from shared.config import AdminConfig, Settings


def test_with_an_admin_key_the_banner_only_points_at_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAPI_ADMIN_KEY", "configured")
    banner = launch.console_banner(Settings(), "redis://unused")
    assert banner == "aiapi: console at http://127.0.0.1:8000/console (log in with the admin key)"


def test_without_one_a_key_is_made_and_a_one_time_link_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIAPI_ADMIN_KEY", raising=False)
    server = fakeredis.FakeServer()
    monkeypatch.setattr(launch, "redis_client", lambda config: fakeredis.FakeAsyncRedis(server=server))
    banner = launch.console_banner(Settings(), "redis://unused")
    assert banner is not None
    made = launch.os.environ["AIAPI_ADMIN_KEY"]
    assert len(made) >= 32 and made not in banner
    link = re.search(r"/console/login/link/(\S+) ", banner)
    assert link

    async def redeem_twice() -> tuple[bool, bool]:
        auth = ConsoleAuth(fakeredis.FakeAsyncRedis(server=server))
        return await auth.redeem_link(link.group(1)), await auth.redeem_link(link.group(1))

    # Printed before the API's loop runs: the banner makes its own, as aiapi up does.
    assert asyncio.run(redeem_twice()) == (True, False)


def test_no_console_when_the_admin_key_is_configured_away() -> None:
    assert launch.console_banner(Settings(admin=AdminConfig(api_key_env=None)), "redis://unused") is None
