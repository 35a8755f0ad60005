"""The admin API's channel bodies: a masked key sent back means the key in force."""

from __future__ import annotations

import msgspec
import pytest

from api.admin.channels import _mask, _masked, _named, _unmasked
from shared.channel_config import AccountConfig, AnthropicChannel, MockChannel, OpenAIChannel
from shared.errors import InvalidRequest

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


@pytest.mark.parametrize(
    "elsewhere",
    [
        msgspec.structs.replace(_masked(CURRENT), base_url="https://attacker.example"),
        AnthropicChannel(**{f: getattr(_masked(CURRENT), f) for f in ("name", "base_url", "models", "api_key")}),
    ],
)
def test_a_masked_key_does_not_follow_the_channel_to_another_destination(elsewhere: OpenAIChannel) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _unmasked(elsewhere, CURRENT)
    assert caught.value.param == "api_key"
    accounts_only = msgspec.structs.replace(_masked(CURRENT), api_key="sk-new", base_url="https://attacker.example")
    with pytest.raises(InvalidRequest) as caught:
        _unmasked(accounts_only, CURRENT)
    assert caught.value.param == "accounts[0].api_key"


def test_the_path_names_the_channel() -> None:
    assert msgspec.json.decode(_named(b'{"type": "mock"}', "c")) == {"type": "mock", "name": "c"}
    assert msgspec.json.decode(_named(b'{"name": "c", "models": []}', "c")) == {"name": "c", "models": []}
    with pytest.raises(InvalidRequest) as caught:
        _named(b'{"name": "other"}', "c")
    assert caught.value.param == "name"
