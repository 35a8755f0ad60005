"""``[access]``: who may call the gateway, which models each caller may use, and how much.

``mode = "open"`` (the default) lets anyone call and checks nothing. ``mode = "keys"`` requires every
request to bear an API key (``Authorization: Bearer <key>``): one listed here as ``[[access.keys]]`` or one
created at runtime through the admin API. The file never holds a key itself, only its SHA-256 hex digest
(``key_sha256``) or the name of the environment variable that holds it (``key_env``).

    [access]
    mode = "keys"

    [[access.keys]]
    name = "team-a"
    key_env = "TEAM_A_KEY"
    models = ["gpt-4o-mini"]     # empty: every model
    rpm = 60                     # requests per minute, 0: unlimited
    tpm = 100000                 # tokens per minute, 0: unlimited
    budget_tokens = 0            # tokens in total, 0: unlimited
    budget_usd = 50.0            # dollars in total (at the [prices] table), 0: unlimited
    budget_usd_monthly = 0       # dollars per calendar month (UTC), 0: unlimited
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated, Literal

import msgspec

from shared.ledger_config import Usd

__all__ = ("AccessConfig", "AccessKeyConfig", "Count", "KeyName", "KeyPolicy", "key_digest")

KeyName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
"""Safe in URL paths and Redis key names."""

Count = Annotated[int, msgspec.Meta(ge=0)]
"""A limit: 0 means unlimited."""
_Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{64}$")]


def key_digest(key: str) -> str:
    """How a key is stored and looked up: its SHA-256, hex. Keys are random, so no salt is needed."""
    return hashlib.sha256(key.encode()).hexdigest()


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class KeyPolicy(_Section, frozen=True, kw_only=True):
    """One API key's name and limits: what the config file and the admin API both describe."""

    name: KeyName
    models: list[str] = []
    """Model names the key may use; empty means every model."""
    rpm: Count = 0
    """Requests per minute (sliding window), 0 for unlimited."""
    tpm: Count = 0
    """Tokens (input + output) per minute (sliding window), 0 for unlimited."""
    budget_tokens: Count = 0
    """Tokens in total over the key's life, 0 for unlimited."""
    budget_usd: Usd = 0.0
    """Dollars in total over the key's life (costed at the price table), 0 for unlimited."""
    budget_usd_monthly: Usd = 0.0
    """Dollars per calendar month (UTC), 0 for unlimited."""
    enabled: bool = True


class AccessKeyConfig(KeyPolicy, frozen=True, kw_only=True):
    key_sha256: _Sha256 | None = None
    """The key's SHA-256 hex digest (``printf %s "$KEY" | sha256sum``)."""
    key_env: str | None = None
    """An environment variable holding the key; it is hashed when the API loads its keys."""

    def __post_init__(self) -> None:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError(f"access key '{self.name}' needs exactly one of key_sha256 and key_env")

    def digest(self) -> str | None:
        """The digest the key is looked up by, or ``None`` when its variable is unset or empty."""
        if self.key_sha256 is not None:
            return self.key_sha256.lower()
        key = os.environ.get(self.key_env or "") or None
        return key_digest(key) if key else None


class AccessConfig(_Section, frozen=True, kw_only=True):
    mode: Literal["open", "keys"] = "open"
    """``open``: no key is asked for or checked. ``keys``: every API request must bear a known key."""
    keys: list[AccessKeyConfig] = []
    cache_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """How long an API process trusts what it read about an admin-created key. A key deleted, disabled or
    limited through the admin API keeps working on other API processes for up to this long."""

    def __post_init__(self) -> None:
        names = [key.name for key in self.keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate access key names: {', '.join(duplicates)}")
