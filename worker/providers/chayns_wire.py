"""chayns' JSON payloads: the model catalog, user settings, intercom threads and messages, image uploads.

Only the fields the provider reads or sends are declared; the rest of each payload is ignored. Ids are
strings in every capture seen, but they are read as ``str | int`` and compared as text, so a numeric id
would not break the thread bookkeeping.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

__all__ = (
    "Author",
    "CatalogModel",
    "CreatedThread",
    "FollowUp",
    "ImagePath",
    "ImageRef",
    "Member",
    "NewMember",
    "NewMessage",
    "NewThread",
    "PostedMessage",
    "ThreadMessage",
    "UploadedImage",
    "UserSettings",
)


class CatalogModel(msgspec.Struct, rename="camel"):
    """One entry of ``/chayns-ai-chatbot/nativeModelChatbot``: a model is an agent person to talk to."""

    show_name: str
    person_id: str


class UserSettings(msgspec.Struct, rename="camel"):
    person_id: str


class ImageRef(msgspec.Struct):
    url: str


class NewMember(msgspec.Struct, rename="camel", omit_defaults=True):
    person_id: str
    is_admin: bool = False


class NewMessage(msgspec.Struct, omit_defaults=True):
    text: str
    images: list[ImageRef] | UnsetType = UNSET


class NewThread(msgspec.Struct, rename="camel"):
    members: list[NewMember]
    type_id: int
    messages: list[NewMessage]
    ner_mode: str = "None"
    priority: int = 0


class FollowUp(msgspec.Struct, rename="camel", omit_defaults=True):
    text: str
    cursor_position: int
    images: list[ImageRef] | UnsetType = UNSET


class Author(msgspec.Struct):
    id: str | int


class Member(msgspec.Struct, rename="camel"):
    id: str | int
    person_id: str | None = None


class ThreadMessage(msgspec.Struct, rename="camel"):
    """A message as the thread endpoints return it. ``type_id`` 1 is a chat message; the agent's
    reasoning arrives as type 18 before its answer."""

    creation_time: str
    author: Author | None = None
    type_id: int = 0
    text: str | None = None


class CreatedThread(msgspec.Struct):
    id: str | int
    members: list[Member]
    messages: list[ThreadMessage]


class PostedMessage(msgspec.Struct, rename="camel"):
    creation_time: str
    author: Author | None = None


class ImagePath(msgspec.Struct):
    path: str


class UploadedImage(msgspec.Struct, rename="camel"):
    image: ImagePath
    base_domain: str

    def url(self) -> str:
        return self.base_domain.rstrip("/") + "/" + self.image.path.lstrip("/")
