"""The Responses API: create (streaming, not, background), retrieve and replay, delete, cancel, input items."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from api.access.admission import admit, authenticate
from api.access.identity import client_identity
from api.delivery.streaming import SSE_HEADERS, Answer, Relayed, SseFormat, reply, sse_response
from api.intake.decoding import check_content_type
from api.intake.submit import check_model, submit
from api.middleware import REQUEST_ID_KEY
from api.openapi import EventStream, documented
from api.responses import request as adapter
from api.responses.objects import DeletedResponse, InputItemList, ResponseObject, StreamEvent, encode_sse
from api.responses.projection import ResponseProjector
from api.responses.store import StoredResponse
from api.state import GatewayState, gateway_state
from shared import logs
from shared.errors import ClientClosed, Conflict, GatewayError, InvalidRequest, NotFound
from shared.events import Failed, GenerationEvent
from shared.generation import ClientInfo, GenerationRequest, Message, TextPart
from shared.ids import new_response_id

__all__ = ("HANDLERS", "cancel_response", "create_response", "delete_response", "list_input_items", "retrieve_response")

_encoder = msgspec.json.Encoder()
_ONE = "/responses/{response_id:str}"
_CANCEL_WAIT_S = 2.0


def _json(value: msgspec.Struct) -> Response[bytes]:
    return Response(_encoder.encode(value), media_type="application/json")


@post(
    "/responses",
    status_code=200,
    operation_class=documented(
        ResponseObject, body=adapter.CreateResponseBody, stream=EventStream("`stream: true`", (StreamEvent,))
    ),
)
async def create_response(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    admission = await admit(request)
    state = gateway_state(request)
    check_content_type(request.headers.get("content-type"))
    body = adapter.decode_create_response(await request.body())
    check_model(request, body.model)
    owner = client_identity(request)
    history, inherited_session = await _history(state, body.previous_response_id, owner)
    response_id = new_response_id()
    logs.generation_id.set(response_id)
    created = int(time.time())
    parsed = adapter.parse_input(body.input, id_prefix=f"msg_{response_id.removeprefix('resp_')}i")
    tools = adapter.tools(body)
    choice = adapter.tool_choice(body, tools)
    shell = adapter.shell(body, response_id=response_id, created_at=created, choice=choice)
    conversation = history + parsed.messages
    instructions = [Message("system", [TextPart(body.instructions)])] if body.instructions else []
    store = state.responses
    generation = GenerationRequest(
        id=response_id,
        request_id=request.scope["state"][REQUEST_ID_KEY],
        model=body.model,
        messages=instructions + conversation,
        reply_to=state.dispatcher.reply_topic,
        created=created,
        tools=tools,
        tool_choice=choice,
        sampling=adapter.sampling(body),
        client=ClientInfo.from_headers(request.headers),
        retain_s=store.ttl_s if shell.store else None,
        detached=shell.background,
    )
    queue_timeout = store.queue_timeout_s(shell.background)

    async def keep(admitted: GenerationRequest) -> None:
        session_id = admitted.session.id if admitted.session else None
        record = StoredResponse(
            shell=shell, owner=owner, conversation=conversation, input_items=parsed.items, session_id=session_id
        )
        await store.create(record)

    gated = keep if shell.store else None
    if shell.background and not body.stream:
        await submit(
            request,
            admission,
            generation,
            listen=False,
            queue_timeout_s=queue_timeout,
            messages_param="input",
            inherited_session=inherited_session,
            gated=gated,
        )
        return _json(ResponseProjector(shell).snapshot())
    projector = ResponseProjector(shell)
    output: Answer | SseFormat
    if not body.stream:
        output = _final(projector)
    else:
        output = SseFormat(
            lambda event: encode_sse(projector.feed(event)),
            lambda error: encode_sse(projector.fail(error.info())),
            lambda: projector.done,
        )
    relayed = await submit(
        request,
        admission,
        generation,
        queue_timeout_s=queue_timeout,
        messages_param="input",
        inherited_session=inherited_session,
        gated=gated,
    )
    return await reply(request, relayed, output, keepalive_s=state.settings.relay.keepalive_s)


async def _history(state: GatewayState, previous_id: str | None, owner: str) -> tuple[list[Message], str | None]:
    """The conversation a request continues, and that conversation's session."""
    if previous_id is None:
        return [], None
    try:
        previous = await state.responses.load(previous_id, owner)
    except NotFound:
        raise NotFound(
            f"Previous response with id '{previous_id}' not found.",
            code="previous_response_not_found",
            param="previous_response_id",
        ) from None
    projector, _ = await state.responses.project(previous)
    if not projector.done:
        raise Conflict(
            f"Previous response '{previous_id}' is still in progress.",
            code="previous_response_in_progress",
            param="previous_response_id",
        )
    return previous.conversation + adapter.history_from_output(projector.output), previous.session_id


def _final(projector: ResponseProjector) -> Callable[[GenerationEvent], ResponseObject | None]:
    """The non-streaming answer: the finished response, or the failure as an HTTP error."""

    def feed(event: GenerationEvent) -> ResponseObject | None:
        projector.feed(event)
        if not projector.done:
            return None
        if isinstance(event, Failed) and projector.status == "failed":
            raise GatewayError.from_info(event.error)
        return projector.snapshot()

    return feed


@get(_ONE, operation_class=documented(ResponseObject, stream=EventStream("`?stream=true`", (StreamEvent,))))
async def retrieve_response(
    request: Request[Any, Any, Any],
    response_id: FromPath[str],
    stream: FromQuery[bool] = False,
    starting_after: FromQuery[int | None] = None,
) -> Response[bytes] | Stream:
    await authenticate(request)
    state = gateway_state(request)
    record = await state.responses.load(response_id, client_identity(request))
    projector, events = await state.responses.project(record)
    if not stream:
        return _json(projector.snapshot())
    after = -1 if starting_after is None else starting_after
    if projector.done:
        replay = encode_sse([event for event in events if event.sequence_number > after])
        return Stream(iter([replay]), media_type="text/event-stream", headers=SSE_HEADERS)
    # Still running: follow the log from the start, through the same projection, showing only what is new.
    live = ResponseProjector(record.shell)
    tail = state.relay.tail(response_id, queue_timeout_s=state.responses.queue_timeout_s(record.shell.background))
    news = SseFormat(
        lambda event: encode_sse([e for e in live.feed(event) if e.sequence_number > after]),
        lambda error: encode_sse([e for e in live.fail(error.info()) if e.sequence_number > after]),
        lambda: live.done,
    )
    return sse_response(
        Relayed(tail, state.dispatcher, detached=True), [], news, keepalive_s=state.settings.relay.keepalive_s
    )


@delete(_ONE, status_code=200, operation_class=documented(DeletedResponse))
async def delete_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> Response[bytes]:
    await authenticate(request)
    state = gateway_state(request)
    await state.responses.load(response_id, client_identity(request))
    await state.responses.delete(response_id)
    await state.dispatcher.cancel(response_id)
    return _json(DeletedResponse(response_id))


@post(f"{_ONE}/cancel", status_code=200, operation_class=documented(ResponseObject))
async def cancel_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> Response[bytes]:
    await authenticate(request)
    state = gateway_state(request)
    record = await state.responses.load(response_id, client_identity(request))
    if not record.shell.background:
        raise InvalidRequest("Only responses created with background=true can be cancelled.", param="response_id")
    projector, _ = await state.responses.project(record)
    if projector.done:
        return _json(projector.snapshot())
    await state.dispatcher.cancel(response_id, remember_s=state.responses.ttl_s)
    deadline = time.monotonic() + _CANCEL_WAIT_S
    while not projector.done and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        projector, _ = await state.responses.project(record)
    if not projector.done:
        # The worker has been told and stops within a moment; the client asked for a cancelled response.
        projector.fail(ClientClosed("The response was cancelled.").info())
    return _json(projector.snapshot())


@get(f"{_ONE}/input_items", operation_class=documented(InputItemList))
async def list_input_items(
    request: Request[Any, Any, Any],
    response_id: FromPath[str],
    limit: FromQuery[int] = 20,
    order: FromQuery[Literal["asc", "desc"]] = "desc",
    after: FromQuery[str | None] = None,
) -> Response[bytes]:
    await authenticate(request)
    state = gateway_state(request)
    record = await state.responses.load(response_id, client_identity(request))
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be between 1 and 100.", param="limit")
    items = record.input_items if order == "asc" else record.input_items[::-1]
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return _json(
        InputItemList(
            data=page,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
            has_more=len(items) > limit,
        )
    )


HANDLERS = (create_response, retrieve_response, delete_response, cancel_response, list_input_items)
"""The front door's route handlers, mounted under each public prefix."""
