"""Zero-width session ids and reply fingerprints."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.generation import Message, TextPart, ToolCall
from shared.sessions import (
    decode_zero_width,
    encode_zero_width,
    fingerprint,
    history_key,
    strip_messages,
    strip_zero_width,
    turn_fingerprint,
)


@given(st.text(min_size=1, max_size=40), st.text(max_size=40), st.text(max_size=40))
def test_any_id_survives_being_hidden_in_any_text(session_id: str, before: str, after: str) -> None:
    hidden = encode_zero_width(session_id)
    clean_before, clean_after = strip_zero_width(before), strip_zero_width(after)
    assert decode_zero_width(clean_before + hidden + clean_after) == session_id
    assert strip_zero_width(clean_before + hidden + clean_after) == clean_before + clean_after


def test_the_last_marker_wins_and_broken_ones_are_ignored() -> None:
    text = encode_zero_width("old") + " reply " + encode_zero_width("new")
    assert decode_zero_width(text) == "new"
    assert decode_zero_width(encode_zero_width("ok") + encode_zero_width("x")[:-3]) == "ok"
    assert decode_zero_width("no marker here") is None


def test_fingerprints_ignore_whitespace_and_invisible_characters_but_not_words() -> None:
    assert fingerprint("Hello   world\n", []) == fingerprint(" Hello world\u200b", [])
    assert fingerprint("Hello world", []) != fingerprint("Hello there", [])


def test_tool_call_replies_are_fingerprinted_by_call_ids_in_any_order() -> None:
    assert fingerprint("", ["b", "a"]) == fingerprint("some text", ["a", "b"])
    assert fingerprint("", ["a"]) != fingerprint("", ["b"])


def test_a_turn_is_the_reply_and_what_it_answered() -> None:
    reply = Message("assistant", [TextPart("ok")])
    assert turn_fingerprint(Message("user", [TextPart("yes?")]), reply) != turn_fingerprint(
        Message("user", [TextPart("no?")]), reply
    )


def test_history_keys_are_per_owner_and_per_conversation() -> None:
    history = [Message("user", [TextPart("a")]), Message("assistant", tool_calls=[ToolCall("c", "f", "{}")])]
    assert history_key("alice", history) == history_key("alice", history)
    assert history_key("alice", history) != history_key("bob", history)
    assert history_key("alice", history[:1]) != history_key("alice", history)


def test_strip_messages_cleans_text_parts_only() -> None:
    [message] = strip_messages([Message("user", [TextPart("a\u200bb" + encode_zero_width("s"))])])
    assert message.text() == "ab"
