"""Client detection from the headers coding agents and SDKs really send, and the profiles that follow."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from shared.config import MockChannel
from shared.generation import ClientInfo, FunctionTool, ToolChoice
from worker.toolbridge import ClientKind, detect_client, profile_for, validator_for


@pytest.mark.parametrize(
    ("user_agent", "headers", "kind"),
    [
        ("Kilo-Code/4.80.0", {}, "kilo"),
        ("OpenAI/JS 4.96.0", {"X-Title": "Kilo Code", "X-KiloCode-Version": "4.80.0"}, "kilo"),
        ("", {"HTTP-Referer": "https://kilocode.ai"}, "kilo"),
        ("RooCode/3.25.1", {"X-Title": "Roo Code"}, "roo"),
        ("OpenAI/JS 5.0", {"http-referer": "https://github.com/RooVetGit/Roo-Cline", "x-title": "Roo Code"}, "roo"),
        ("Roo-Code 3.20.0", {}, "roo"),
        ("OpenAI/JS 4.83.0", {"HTTP-Referer": "https://cline.bot", "X-Title": "Cline"}, "cline"),
        ("Cline/3.0.47", {}, "cline"),
        ("node", {"X-Cline-Version": "3.17.0"}, "cline"),
        ("OpenAI/Python 1.109.1", {"X-Stainless-Lang": "python"}, "openai_sdk"),
        ("AsyncOpenAI/Python 1.40.0", {}, "openai_sdk"),
        ("curl/8.5.0", {}, "generic"),
        ("", None, "generic"),
    ],
)
def test_detect_client(user_agent: str, headers: dict[str, str] | None, kind: ClientKind) -> None:
    assert detect_client(user_agent, headers) == kind


def test_user_agent_in_headers_counts_too() -> None:
    assert detect_client("", {"User-Agent": "RooCode/3.0"}) == "roo"


def test_agent_profiles_are_strict_about_turns() -> None:
    for kind in ("cline", "roo", "kilo"):
        profile = profile_for(kind)
        assert profile.kind == kind
        assert profile.one_call_per_turn and profile.require_tool_call and profile.fix_tag_typos
        assert profile.fallback == "attempt_completion"
        assert profile.validation == "relaxed"


def test_generic_profiles_leave_text_alone() -> None:
    for kind in ("generic", "openai_sdk"):
        profile = profile_for(kind)
        assert not (profile.one_call_per_turn or profile.require_tool_call or profile.fix_tag_typos)
        assert profile.fallback == "discard"


def test_validator_for_profile() -> None:
    tools = [FunctionTool("attempt_completion")]
    roo = validator_for(profile_for("roo"), tools)
    assert roo.one_call_per_turn and roo.require_call and roo.fallback == "attempt_completion"
    assert not validator_for(profile_for("roo"), tools, ToolChoice("none")).require_call
    assert not validator_for(profile_for("roo"), []).require_call
    generic = validator_for(profile_for("generic"), tools, ToolChoice("required"))
    assert generic.require_call and not generic.one_call_per_turn


def test_profile_overrides_from_the_channel() -> None:
    roo = profile_for("roo", validation="strict", fallback="read_file")
    assert (roo.validation, roo.fallback, roo.one_call_per_turn) == ("strict", "read_file", True)
    assert profile_for("generic", validation=None) == profile_for("generic")


def test_channel_config_names_every_client_kind() -> None:
    field = next(f for f in msgspec.structs.fields(MockChannel) if f.name == "tool_client")
    assert set(get_args(field.type)) == {"auto", *get_args(ClientKind)}


def test_client_info_keeps_only_identifying_headers() -> None:
    headers = {
        "user-agent": "RooCode/3.25.1",
        "x-title": "Roo Code",
        "authorization": "Bearer k",
        "x-cline-version": "",
    }
    info = ClientInfo.from_headers(headers)
    assert info == ClientInfo("RooCode/3.25.1", {"x-title": "Roo Code"})
    assert detect_client(info.user_agent, info.headers) == "roo"
    assert ClientInfo.from_headers({"http-referer": "https://cline.bot"}).headers == {
        "http-referer": "https://cline.bot"
    }
