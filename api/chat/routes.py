"""``POST /v1/chat/completions``: streaming and not, through the queue."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, post
from litestar.response import Stream
from msgspec import UNSET

from api.access.admission import admit
from api.chat.output import ChatCompletion, ChatCompletionBuilder, ChatCompletionChunk, ChatStreamWriter, error_frame
from api.chat.request import ChatRequestBody, decode_chat_request, to_generation
from api.delivery.streaming import Answer, SseFormat, reply
from api.intake.decoding import check_content_type
from api.intake.submit import check_model, submit
from api.middleware import REQUEST_ID_KEY
from api.openapi import EventStream, documented
from api.state import gateway_state
from shared import logs
from shared.errors import ErrorBody
from shared.generation import ClientInfo
from shared.ids import new_generation_id

__all__ = (
    "HANDLERS",
    "chat_completions",
)


@post(
    "/chat/completions",
    status_code=200,
    operation_class=documented(
        ChatCompletion,
        body=ChatRequestBody,
        stream=EventStream("`stream: true`", (ChatCompletionChunk, ErrorBody), last="[DONE]"),
    ),
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    admission = await admit(request)
    state = gateway_state(request)
    check_content_type(request.headers.get("content-type"))
    chat = decode_chat_request(await request.body())
    check_model(request, chat.model)
    generation_id = new_generation_id()
    logs.generation_id.set(generation_id)
    created = int(time.time())
    generation = to_generation(
        chat,
        generation_id=generation_id,
        request_id=request.scope["state"][REQUEST_ID_KEY],
        reply_to=state.dispatcher.reply_topic,
        created=created,
        client=ClientInfo.from_headers(request.headers),
    )
    completion_id = f"chatcmpl-{generation_id}"
    output: Answer | SseFormat
    if not chat.stream:
        output = ChatCompletionBuilder(completion_id=completion_id, model=chat.model, created=created).feed
    else:
        options = chat.stream_options
        include_usage = bool(options and options.include_usage is not UNSET and options.include_usage)
        writer = ChatStreamWriter(
            completion_id=completion_id, model=chat.model, created=created, include_usage=include_usage
        )
        output = SseFormat(writer.feed, error_frame, lambda: writer.done, opening=writer.opening())
    relayed = await submit(request, admission, generation)
    return await reply(request, relayed, output, keepalive_s=state.settings.relay.keepalive_s)


HANDLERS = (chat_completions,)
"""The front door's route handlers, mounted under each public prefix."""
