"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API, through the queue.

The same submit path as every front door (:mod:`api.intake.submit`): keys (``x-api-key`` or a bearer
token), limits, budgets, the session gate, cancel on disconnect and accounting apply as they do to Chat
Completions. Errors have Anthropic's shape (:mod:`api.messages.errors`): before the stream starts as HTTP
errors, after it as an ``event: error``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from api.access.admission import admit
from api.delivery.streaming import Answer, SseFormat, reply
from api.intake.decoding import check_content_type
from api.intake.submit import check_model, submit
from api.messages.errors import EXCEPTION_HANDLERS, AnthropicError
from api.messages.output import (
    PING_FRAME,
    MessageBuilder,
    MessageObject,
    MessageStreamWriter,
    StreamEvent,
    error_frame,
)
from api.messages.request import (
    CountTokensRequestBody,
    MessagesRequestBody,
    decode_count_tokens,
    decode_messages_request,
    prompt_characters,
    to_generation,
)
from api.middleware import REQUEST_ID_KEY
from api.openapi import EventStream, documented
from api.state import gateway_state
from shared import logs
from shared.generation import ClientInfo
from shared.ids import new_generation_id
from shared.usage import estimate_tokens

__all__ = ("HANDLERS", "count_tokens", "create_message")

_encoder = msgspec.json.Encoder()


class TokenCount(msgspec.Struct):
    input_tokens: int


@post(
    "/messages",
    status_code=200,
    exception_handlers=EXCEPTION_HANDLERS,
    operation_class=documented(
        MessageObject,
        body=MessagesRequestBody,
        stream=EventStream("`stream: true`", (StreamEvent,)),
        error=AnthropicError,
    ),
)
async def create_message(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    admission = await admit(request)
    state = gateway_state(request)
    check_content_type(request.headers.get("content-type"))
    body = decode_messages_request(await request.body())
    check_model(request, body.model)
    generation_id = new_generation_id()
    logs.generation_id.set(generation_id)
    generation = to_generation(
        body,
        generation_id=generation_id,
        request_id=request.scope["state"][REQUEST_ID_KEY],
        reply_to=state.dispatcher.reply_topic,
        created=int(time.time()),
        client=ClientInfo.from_headers(request.headers),
    )
    message_id = f"msg_{generation_id}"
    output: Answer | SseFormat
    if not body.stream:
        output = MessageBuilder(message_id=message_id, model=body.model).feed
    else:
        writer = MessageStreamWriter(message_id=message_id, model=body.model)
        output = SseFormat(
            writer.feed, error_frame, lambda: writer.done, opening=writer.opening(), keepalive=PING_FRAME
        )
    relayed = await submit(request, admission, generation)
    return await reply(request, relayed, output, keepalive_s=state.settings.relay.keepalive_s)


@post(
    "/messages/count_tokens",
    status_code=200,
    exception_handlers=EXCEPTION_HANDLERS,
    operation_class=documented(TokenCount, body=CountTokensRequestBody, error=AnthropicError),
)
async def count_tokens(request: Request[Any, Any, Any]) -> Response[bytes]:
    """An estimate from the prompt's text: no backend is asked, so it costs no upstream call."""
    await admit(request)
    check_content_type(request.headers.get("content-type"))
    body = decode_count_tokens(await request.body())
    check_model(request, body.model)
    return Response(
        _encoder.encode(TokenCount(estimate_tokens(prompt_characters(body)))), media_type="application/json"
    )


HANDLERS = (create_message, count_tokens)
"""The front door's route handlers, mounted under each public prefix."""
