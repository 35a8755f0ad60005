"""chayns' HTTP endpoints, one method each, with upstream failures turned into gateway errors.

Requests go straight to the httpx transport, as in the OpenAI provider: a fixed upstream needs none of
``AsyncClient``'s merging, and every response is read and closed before the method returns, so a
cancelled caller leaves no connection behind.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import urllib.parse
from typing import TypeVar

import httpx
import msgspec

from shared.config import ChaynsChannel
from shared.errors import InvalidRequest, UpstreamError
from worker.providers._http import error_from_response, error_from_transport
from worker.providers.chayns_wire import (
    CatalogModel,
    CreatedThread,
    FollowUp,
    NewThread,
    PostedMessage,
    ThreadMessage,
    UploadedImage,
    UserSettings,
)

__all__ = ("ChaynsApi", "ThreadGone")

_T = TypeVar("_T")
_encoder = msgspec.json.Encoder()
_EXTENSIONS = {"jpeg": "jpg", "svg+xml": "svg"}
_catalog = msgspec.json.Decoder(list[CatalogModel])
_settings = msgspec.json.Decoder(UserSettings)
_created = msgspec.json.Decoder(CreatedThread)
_posted = msgspec.json.Decoder(PostedMessage)
_messages = msgspec.json.Decoder(list[ThreadMessage])
_uploaded = msgspec.json.Decoder(UploadedImage)


class ThreadGone(UpstreamError):
    """The thread to continue no longer exists (deleted by its owner, or expired)."""


def _decode_data_url(url: str) -> tuple[bytes, str]:
    """The bytes and media type of a ``data:`` URL."""
    header, comma, payload = url.partition(",")
    if not comma or not header.startswith("data:"):
        raise InvalidRequest("an image must be an http(s) URL or a data: URL", param="messages")
    media_type, *flags = header[5:].split(";")
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in flags else urllib.parse.unquote_to_bytes(payload)
    except binascii.Error:
        raise InvalidRequest("an image's data: URL is not valid base64", param="messages") from None
    return data, media_type or "application/octet-stream"


def _filename(media_type: str) -> str:
    subtype = media_type.partition("/")[2].lower()
    extension = _EXTENSIONS.get(subtype, "".join(c for c in subtype if c.isalnum()) or "bin")
    return f"image.{extension}"


class ChaynsApi:
    def __init__(self, channel: ChaynsChannel, transport: httpx.AsyncBaseTransport) -> None:
        self._name = channel.name
        self._base = channel.base_url.rstrip("/")
        self._auth = channel.auth_url.rstrip("/")
        self._headers = list(channel.headers.items())
        self._timeout = httpx.Timeout(channel.timeout_s, connect=channel.connect_timeout_s).as_dict()
        self._transport = transport

    async def _send(
        self,
        method: str,
        url: str,
        token: str | None,
        *,
        params: dict[str, str] | None = None,
        json: msgspec.Struct | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        """The response, already read and closed."""
        headers = list(self._headers)
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        content = None
        if json is not None:
            headers.append(("Content-Type", "application/json"))
            content = _encoder.encode(json)
        request = httpx.Request(
            method,
            httpx.URL(url, params=params),
            headers=headers,
            content=content,
            files=files,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
            async with contextlib.aclosing(response):
                await response.aread()
        except httpx.TransportError as exc:
            raise error_from_transport(self._name, exc) from exc
        return response

    def _read(self, response: httpx.Response, decoder: msgspec.json.Decoder[_T]) -> _T:
        if response.status_code >= 400:
            raise error_from_response(self._name, response.status_code, response.headers, response.content)
        try:
            return decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            raise UpstreamError(
                f"upstream '{self._name}' sent an unreadable reply: {exc}", code="upstream_bad_reply"
            ) from exc

    async def catalog(self) -> list[CatalogModel]:
        """The models and their agents; public, so it is fetched without a token."""
        response = await self._send("GET", f"{self._base}/chayns-ai-chatbot/nativeModelChatbot", None)
        return self._read(response, _catalog)

    async def user_settings(self, token: str | None) -> UserSettings:
        return self._read(await self._send("GET", f"{self._auth}/v2/userSettings", token), _settings)

    async def create_thread(self, token: str | None, thread: NewThread) -> CreatedThread:
        url = f"{self._base}/intercom-backend/v2/thread"
        response = await self._send("POST", url, token, params={"forceCreate": "true"}, json=thread)
        return self._read(response, _created)

    async def post_message(self, token: str | None, thread_id: str, message: FollowUp) -> PostedMessage:
        url = f"{self._base}/intercom-backend/v2/thread/{urllib.parse.quote(thread_id, safe='')}/message"
        response = await self._send("POST", url, token, json=message)
        if response.status_code in (404, 410):
            raise ThreadGone(f"upstream '{self._name}': thread {thread_id} is gone", code="upstream_thread_gone")
        return self._read(response, _posted)

    async def messages_after(self, token: str | None, thread_id: str, after: str) -> list[ThreadMessage]:
        """The thread's messages since ``after`` (a ``creationTime``); none yet is HTTP 204."""
        url = f"{self._base}/intercom-backend/v2/thread/{urllib.parse.quote(thread_id, safe='')}/message"
        response = await self._send("GET", url, token, params={"take": "1000", "afterDate": after})
        if response.status_code == 204 or (response.status_code == 200 and not response.content.strip()):
            return []
        return self._read(response, _messages)

    async def upload_image(self, token: str | None, person_id: str, data_url: str) -> str:
        """Upload an image given as a ``data:`` URL; its public URL."""
        data, media_type = _decode_data_url(data_url)
        url = f"{self._base}/image-service/v3/Images/{urllib.parse.quote(person_id, safe='')}"
        response = await self._send("POST", url, token, files={"file": (_filename(media_type), data, media_type)})
        return self._read(response, _uploaded).url()

    async def aclose(self) -> None:
        await self._transport.aclose()
