"""Stored responses in Redis: the record written at creation, and the object rebuilt from the log.

A stored response is two keys in one cluster slot: the record (owner, echoed request fields, the
conversation so far, the input items) written once by the API, and the generation's event log, which
the worker appends to. Nothing is rewritten when a response finishes: its current state is always the
projection of its log, so a worker or API instance dying at any moment cannot leave a half-updated object.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from api.responses.objects import InputItemView, ResponseShell, StreamEvent
from api.responses.projection import ResponseProjector
from shared import keys
from shared.errors import ClientClosed, NotFound, RedisUnavailable, ServiceUnavailable, WorkerLost
from shared.events import GenerationEvent, Started, decode_envelope
from shared.generation import Message

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from shared.config import Settings

__all__ = ("ResponseStore", "StoredResponse")


class StoredResponse(msgspec.Struct, kw_only=True):
    shell: ResponseShell
    owner: str
    """Digest of the API key that created it; nobody else may see it."""
    conversation: list[Message]
    """History up to and including this response's input (``instructions`` excluded: they do not carry over)."""
    input_items: list[InputItemView]
    session_id: str | None = None
    """The conversation's session; a response continuing this one joins it."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StoredResponse)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


class ResponseStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    @property
    def ttl_s(self) -> int:
        return self._settings.responses.store_ttl_s

    async def create(self, record: StoredResponse) -> None:
        try:
            await self._redis.set(keys.ResponseKeys(record.shell.id).record, _encoder.encode(record), ex=self.ttl_s)
        except RedisError as exc:
            raise RedisUnavailable("The gateway cannot reach its store.") from exc

    async def load(self, response_id: str, owner: str) -> StoredResponse:
        """The record, or 404 if it does not exist or belongs to another key."""
        try:
            data = await self._redis.get(keys.ResponseKeys(response_id).record)
        except RedisError as exc:
            raise RedisUnavailable("The gateway cannot reach its store.") from exc
        if data is None:
            raise _not_found(response_id)
        record = _decoder.decode(data)
        if record.owner != owner:
            raise _not_found(response_id)
        return record

    async def delete(self, response_id: str) -> None:
        """Remove the record and the event log together (the caller stops a run still going)."""
        response_keys = keys.ResponseKeys(response_id)
        try:
            await self._redis.delete(response_keys.record, response_keys.events)
        except RedisError as exc:
            raise RedisUnavailable("The gateway cannot reach its store.") from exc

    async def project(self, record: StoredResponse) -> tuple[ResponseProjector, list[StreamEvent]]:
        """The response as it stands now, and the stream events so far.

        The fate of a run that can no longer finish (worker gone, cancelled before it started, never
        picked up) is decided here, so a stored response never stays "in progress" forever.
        """
        response_keys = keys.ResponseKeys(record.shell.id)
        try:
            # The lease is read before the log: a worker writes its last event before it lets go, so a
            # lease seen gone means the log read after it is complete.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(response_keys.lease)
                pipe.exists(response_keys.cancel)
                pipe.xrange(response_keys.events)
                leased, cancelled, entries = await pipe.execute()
        except RedisError as exc:
            raise RedisUnavailable("The gateway cannot reach its store.") from exc
        events = [decode_envelope(fields[b"e"]).event for _, fields in entries]
        projector = ResponseProjector(record.shell)
        stream: list[StreamEvent] = []
        for event in events:
            stream += projector.feed(event)
        if not projector.done:
            stream += self._settle(projector, events, leased=bool(leased), cancelled=bool(cancelled))
        return projector, stream

    def _settle(
        self, projector: ResponseProjector, events: list[GenerationEvent], *, leased: bool, cancelled: bool
    ) -> list[StreamEvent]:
        started = any(isinstance(event, Started) for event in events)
        if cancelled and not leased:
            # Cancelled before a worker took it, or the worker is winding down: it will not produce more.
            return projector.fail(ClientClosed("The response was cancelled.").info())
        if started and not leased:
            return projector.fail(WorkerLost("The worker running this response stopped before finishing it.").info())
        waited = time.time() - projector.shell.created_at
        if not started and waited > self.queue_timeout_s(projector.shell.background):
            return projector.fail(ServiceUnavailable("No worker took the response in time.").info())
        return []

    def queue_timeout_s(self, background: bool) -> float:
        if background:
            return self._settings.responses.background_queue_timeout_s
        return self._settings.relay.queue_timeout_s
