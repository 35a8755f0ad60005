"""Which chayns thread a turn goes to, and the text posted there.

A chayns thread keeps the whole conversation upstream, so a turn that continues the previous one posts
only what is new. The provider remembers, per session and channel, the thread and a fingerprint of the
request messages it already holds (:class:`ThreadState`). A request continues that thread only when it
starts with exactly those messages, then the assistant's reply (the thread holds the agent's own version
of it, so it is not posted), then at least one new message. Anything else (an edited history, another
account or model, a regenerated reply) starts a fresh thread with the whole conversation as a transcript.

Transcript format: one block per message, blocks separated by a blank line, each opened by its role in
brackets on a line of its own::

    [System]
    Answer briefly.

    [User]
    What is on this picture?
    [Image 1]

    [Assistant]
    A cat.

    [User]
    And its colour?

An image is attached to the thread message and referred to as ``[Image n]``, its position among the
attachments. Native tool traffic (for channels not using the text bridge) appears as
``[Tool call <id>: <name>] <arguments>`` after the assistant's text and as ``[Tool result <id>]`` blocks.
A lone user message with nothing before it is sent as its plain text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from shared.generation import ImagePart, Message

__all__ = ("Outgoing", "ThreadState", "decode_state", "encode_state", "fingerprint", "plan_turn", "render")

_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
_encoder = msgspec.json.Encoder()


class ThreadState(msgspec.Struct, frozen=True):
    """What a session remembers of its chayns thread between turns."""

    thread_id: str
    user_author_id: str
    """The account's member id in the thread: messages by anyone else are the agent's."""
    account: str
    """A thread belongs to the account that created it; another account cannot post to it."""
    model: str
    """The thread's agent answers as this model only."""
    covered: int
    """How many of the request's messages the thread holds."""
    fingerprint: str
    """:func:`fingerprint` of those messages."""


_state_decoder = msgspec.json.Decoder(ThreadState)


def encode_state(state: ThreadState) -> bytes:
    return _encoder.encode(state)


def decode_state(value: bytes | None) -> ThreadState | None:
    """The stored state; anything unreadable (an older format, say) is no state, so a new thread."""
    if not value:
        return None
    try:
        return _state_decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _images(message: Message) -> list[ImagePart]:
    return [part for part in message.content if isinstance(part, ImagePart)]


def fingerprint(messages: Sequence[Message]) -> str:
    """A digest of the messages' roles, texts, images and tool traffic, in order."""
    digest = hashlib.sha256()
    for message in messages:
        calls = [(call.id, call.name, call.arguments) for call in message.tool_calls]
        urls = [image.url for image in _images(message)]
        # Each message is one JSON array, so the boundaries between messages are unambiguous.
        digest.update(_encoder.encode((message.role, message.text(), urls, calls, message.tool_call_id)))
    return digest.hexdigest()


def plan_turn(
    messages: Sequence[Message], state: ThreadState | None, *, account: str, model: str
) -> tuple[ThreadState | None, list[Message]]:
    """The thread to continue (``None`` for a new one) and the messages to post to it."""
    if state is None or state.account != account or state.model != model:
        return None, list(messages)
    covered = state.covered
    new = list(messages[covered + 1 :])
    continues = (
        0 <= covered < len(messages)
        and messages[covered].role == "assistant"
        and bool(new)
        and all(message.role != "assistant" for message in new)
        and fingerprint(messages[:covered]) == state.fingerprint
    )
    return (state, new) if continues else (None, list(messages))


class Outgoing(msgspec.Struct, frozen=True):
    """A thread message about to be posted: its text and the images to attach, in order."""

    text: str
    images: list[ImagePart]


def _block(message: Message, first_image: int) -> str:
    if message.role != "tool":
        lines = [f"[{_ROLES[message.role]}]"]
    else:
        lines = [f"[Tool result {message.tool_call_id}]" if message.tool_call_id else "[Tool result]"]
    if text := message.text():
        lines.append(text)
    lines.extend(f"[Image {first_image + n}]" for n in range(len(_images(message))))
    lines.extend(f"[Tool call {call.id}: {call.name}] {call.arguments}" for call in message.tool_calls)
    return "\n".join(lines)


def render(messages: Sequence[Message]) -> Outgoing:
    """The text and images that carry ``messages`` to the thread (format in the module docstring)."""
    images = [image for message in messages for image in _images(message)]
    if len(messages) == 1 and messages[0].role == "user":
        return Outgoing(messages[0].text(), images)
    blocks: list[str] = []
    attached = 0
    for message in messages:
        blocks.append(_block(message, attached + 1))
        attached += len(_images(message))
    return Outgoing("\n\n".join(blocks), images)
