"""Putting generations on the arq queue, in one round trip, and waking one worker at once.

arq is used only as "start this generation somewhere": the job carries the encoded
:class:`~shared.generation.GenerationRequest` and returns nothing. Jobs are msgpack, not pickle, so
nothing read from Redis can execute code. Enqueueing writes arq's own job format (``serialize_job``),
instead of arq's WATCH-based ``enqueue_job`` (four round trips); generation ids are random, so the
duplicate check it pays for is not needed.

The job lives in its generation's cluster slot, where ``claim.lua`` reads it, checks for a cancellation
and takes the generation's lease in one call; its id goes on the queue and on the wake-up list
(:data:`~shared.keys.READY`), in the queue's slot. Those are one pipelined round trip (shared with the
other requests queued in the same tick) of commands that each touch one slot, the job first: alone, a
job expires unclaimed, and an id whose job is gone is dropped by the claim that finds it so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from arq.jobs import serialize_job

from shared import keys
from shared.generation import GenerationRequest, encode_request

if TYPE_CHECKING:
    from shared.batching import RedisBatcher

__all__ = ("deserialize_job", "enqueue_generation", "serialize_job_envelope")


def _describe(value: Any) -> str:
    # arq serialises job results on some failure paths; an exception there becomes its description.
    return f"{type(value).__name__}: {value}"


_job_encoder = msgspec.msgpack.Encoder(enc_hook=_describe)
_job_decoder = msgspec.msgpack.Decoder()


def serialize_job_envelope(job: dict[str, Any]) -> bytes:
    return _job_encoder.encode(job)


def deserialize_job(data: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = _job_decoder.decode(data)
    return decoded


async def enqueue_generation(batcher: RedisBatcher, request: GenerationRequest, *, expires_s: float) -> None:
    """Queue ``request`` for any worker; it expires unstarted after ``expires_s``. The commands go in the
    batcher's next round trip, with those of the other requests queued meanwhile."""
    now_ms = int(time.time() * 1000)
    job = serialize_job(
        keys.JOB_FUNCTION, (encode_request(request),), {}, None, now_ms, serializer=serialize_job_envelope
    )
    expires_ms = int(expires_s * 1000)
    await batcher.commands(
        ("PSETEX", keys.GenerationKeys(request.id).job, expires_ms, job),
        ("ZADD", keys.QUEUE, now_ms, request.id),
        ("RPUSH", keys.READY, request.id),
        # With no worker popping, ids would pile up: the list goes once its newest job has expired.
        ("PEXPIRE", keys.READY, expires_ms),
    )
