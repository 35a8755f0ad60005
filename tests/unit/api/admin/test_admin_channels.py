"""The admin API's channel bodies: a masked key sent back means the key in force."""

from __future__ import annotations

import msgspec

from api.admin.channels import _mask, _masked, _unmasked
from shared.channel_config import AccountConfig, MockChannel, OpenAIChannel

CURRENT = OpenAIChannel(
    name="c",
    base_url="https://up.example",
    models=["m"],
    api_key="sk-channel-secret-0001",
    accounts=[AccountConfig(name="a", api_key="sk-account-secret-0002"), AccountConfig(name="b", api_key="short")],
)


def test_a_channel_edited_from_its_masked_view_keeps_its_keys() -> None:
    edited = msgspec.structs.replace(_masked(CURRENT), weight=5)
    assert edited.api_key == _mask(CURRENT.api_key) != CURRENT.api_key
    restored = _unmasked(edited, CURRENT)
    assert restored == msgspec.structs.replace(CURRENT, weight=5)


def test_new_keys_and_new_accounts_are_taken_as_sent() -> None:
    sent = msgspec.structs.replace(
        CURRENT,
        api_key="sk-rotated-channel-key",
        accounts=[AccountConfig(name="a", api_key="…"), AccountConfig(name="new", api_key="sk-…0002")],
    )
    restored = _unmasked(sent, CURRENT)
    assert restored.api_key == "sk-rotated-channel-key"
    assert [a.api_key for a in restored.accounts] == ["…", "sk-…0002"], "a mask of another key is not a match"
    mock = MockChannel(name="m", models=["m"])
    assert _unmasked(mock, CURRENT) is mock and _unmasked(CURRENT, None) is CURRENT
