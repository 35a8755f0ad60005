"""The output sanitizer keeps every valid character, drops illegal ones, and repairs agents' tag typos."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.toolbridge import OutputSanitizer, strip_illegal_characters

VALID = "naïve café — 中文测试 日本語 한국어 😀👩‍👩‍👧 עברית العربية \u200b\ufeff\U0010fffd tab\tnl\ncr\r"


def test_valid_unicode_survives() -> None:
    assert strip_illegal_characters(VALID) == VALID
    assert OutputSanitizer("roo").clean(VALID) == VALID


def test_illegal_characters_are_removed() -> None:
    dirty = "a\x00b\x07c\x0bd\x1be\x7ff\x80g\x9fh\ud800i\udfffj\ufffek\uffffl"
    assert strip_illegal_characters(dirty) == "abcdefghijkl"


def test_surrogate_pair_as_two_code_points_is_joined() -> None:
    assert strip_illegal_characters("x\ud83d\ude00y") == "x😀y"


def test_tag_typos_are_fixed_for_agents_only() -> None:
    text = "<write_file>\n<path>a</path>\n</write_file> <read>x</read> < list_dir > <run_command>"
    fixed = "<write_to_file>\n<path>a</path>\n</write_to_file> <read_file>x</read_file> <list_files> <execute_command>"
    assert OutputSanitizer("roo").clean(text) == fixed
    assert OutputSanitizer("kilo").clean(text) == fixed
    assert OutputSanitizer("generic").clean(text) == text
    assert OutputSanitizer("generic", fix_tag_typos=True).clean(text) == fixed


def test_similar_but_different_tags_are_left_alone() -> None:
    text = "<reader> <write_to_file> <read_file> <readme> <write x='1'>"
    assert OutputSanitizer("cline").clean(text) == text


def test_streaming_holds_only_a_possible_tag() -> None:
    sanitizer = OutputSanitizer("roo")
    assert sanitizer.feed("hello <wri") == "hello "
    assert sanitizer.feed("te_file>body") == "<write_to_file>body"
    assert sanitizer.feed(" x\ud83d") == " x"
    assert sanitizer.feed("\ude00!") == "😀!"
    assert sanitizer.feed("<") == ""
    assert sanitizer.flush() == "<"


_pieces = st.sampled_from(
    ["<", ">", "/", " ", "write_file", "read", "list_dir", "<write", "</read>", "\x00", "\ud83d", "\ude00", "中", "😀"]
)
_texts = st.lists(st.one_of(st.text(), _pieces), max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(_texts, st.lists(st.integers(0, 300), max_size=10), st.booleans())
def test_streaming_equals_whole(text: str, cuts: list[int], typos: bool) -> None:
    sanitizer = OutputSanitizer(fix_tag_typos=typos)
    whole = sanitizer.clean(text)
    out, last = "", 0
    for cut in [*sorted(c for c in cuts if c <= len(text)), len(text)]:
        out += sanitizer.feed(text[last:cut])
        last = cut
    assert out + sanitizer.flush() == whole


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="\ufffe\uffff")))
def test_text_without_illegal_characters_is_unchanged(text: str) -> None:
    assert OutputSanitizer("generic").clean(text) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_output_is_always_encodable(text: str) -> None:
    cleaned = OutputSanitizer("roo").clean(text)
    cleaned.encode("utf-8")
    assert not any(0x80 <= ord(c) <= 0x9F or (ord(c) < 0x20 and c not in "\t\n\r") for c in cleaned)
