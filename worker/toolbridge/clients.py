"""Which client sent a request, and how the bridge should treat its tool calls.

Coding agents identify themselves in headers they send to every OpenAI-compatible endpoint: Kilo Code as
``User-Agent: Kilo-Code/<version>`` with ``X-Title: Kilo Code`` and ``X-KiloCode-Version``; Roo Code as
``User-Agent: RooCode/<version>`` with ``X-Title: Roo Code`` and a Roo-Cline ``HTTP-Referer``; Cline with
``HTTP-Referer: https://cline.bot``, ``X-Title: Cline`` and, in recent versions, ``X-Cline-Version`` or a
``Cline/<version>`` User-Agent. Kilo Code is a fork of Roo Code, itself a fork of Cline, so the most
specific is checked first. The official OpenAI SDKs send ``User-Agent: OpenAI/Python <v>`` (or ``/JS``)
and ``X-Stainless-*`` headers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.generation import FunctionTool, ToolChoice
from worker.toolbridge.validator import Fallback, ToolCallValidator, ValidationMode

__all__ = ("ClientKind", "ClientProfile", "detect_client", "profile_for", "validator_for")

ClientKind = Literal["generic", "cline", "roo", "kilo", "openai_sdk"]


@dataclass(frozen=True, slots=True)
class ClientProfile:
    kind: ClientKind
    validation: ValidationMode
    fallback: Fallback
    one_call_per_turn: bool
    """The client runs one tool per assistant message and ignores (or errors on) the rest."""
    require_tool_call: bool
    """The client expects a tool call in every turn; a text-only answer is an error to it."""
    fix_tag_typos: bool
    """The client reads XML tool tags out of the text, so misspelt ones are repaired."""


_PROFILES: dict[ClientKind, ClientProfile] = {
    "generic": ClientProfile("generic", "relaxed", "discard", False, False, False),
    "openai_sdk": ClientProfile("openai_sdk", "relaxed", "discard", False, False, False),
    "cline": ClientProfile("cline", "relaxed", "attempt_completion", True, True, True),
    "roo": ClientProfile("roo", "relaxed", "attempt_completion", True, True, True),
    "kilo": ClientProfile("kilo", "relaxed", "attempt_completion", True, True, True),
}

# Forks keep their parent's markers in some headers, so the most specific kind is tried first.
_SIGNS: tuple[tuple[ClientKind, str, tuple[str, ...]], ...] = (
    ("kilo", "user-agent", ("kilo-code", "kilocode")),
    ("kilo", "x-title", ("kilo code", "kilo-code", "kilocode")),
    ("kilo", "x-kilocode-version", ("",)),
    ("kilo", "http-referer", ("kilocode.ai", "kilo.ai")),
    ("roo", "user-agent", ("roocode", "roo-code", "roo code", "roo-cline")),
    ("roo", "x-title", ("roo code", "roo-code", "roocode")),
    ("roo", "http-referer", ("roo-cline", "roocode.com", "roo-code")),
    ("cline", "user-agent", ("cline",)),
    ("cline", "x-title", ("cline",)),
    ("cline", "x-cline-version", ("",)),
    ("cline", "http-referer", ("cline.bot",)),
    ("openai_sdk", "user-agent", ("openai/python", "openai/js", "openai/node", "asyncopenai/python")),
    ("openai_sdk", "x-stainless-lang", ("",)),
)


def detect_client(user_agent: str, headers: Mapping[str, str] | None = None) -> ClientKind:
    """The client's kind from its User-Agent and, when given, its other request headers."""
    lowered = {key.lower(): value.lower() for key, value in (headers or {}).items()}
    lowered["user-agent"] = " ".join(filter(None, (user_agent.lower(), lowered.get("user-agent", ""))))
    for kind, header, fragments in _SIGNS:
        value = lowered.get(header)
        if value is not None and (value or header != "user-agent") and any(f in value for f in fragments):
            return kind
    return "generic"


def profile_for(
    kind: ClientKind, *, validation: ValidationMode | None = None, fallback: Fallback | None = None
) -> ClientProfile:
    """The kind's profile; ``validation`` and ``fallback``, when given, override its own (channel config)."""
    profile = _PROFILES.get(kind, _PROFILES["generic"])
    return dataclasses.replace(
        profile, validation=validation or profile.validation, fallback=fallback or profile.fallback
    )


def validator_for(
    profile: ClientProfile, tools: Sequence[FunctionTool], choice: ToolChoice | None = None
) -> ToolCallValidator:
    """The validator a request from this client gets."""
    return ToolCallValidator(
        tools,
        profile.validation,
        profile.fallback,
        one_call_per_turn=profile.one_call_per_turn,
        choice=choice,
        require_call=profile.require_tool_call and bool(tools) and (choice is None or choice.mode != "none"),
    )
