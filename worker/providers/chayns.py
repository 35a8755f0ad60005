"""chayns (Sidekick) models through intercom threads: post the turn, then poll until the agent answers.

A model is an agent person: the catalog maps its name (``showName``, the upstream model name) to its
``personId``. The account, identified by its access token, opens a thread with that agent (or continues
the session's thread, see :mod:`worker.providers.chayns_thread`) and polls the thread for the agent's
answer. This API does not stream tokens, so the answer is sent as one text delta once it is complete.
chayns reports no token counts either; usage is an estimate of about four characters per token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Sequence

import httpx
import msgspec

from shared.config import Account, ChaynsChannel
from shared.errors import GatewayError, UpstreamError, UpstreamTimeout
from shared.events import Finished, TextDelta, Usage
from shared.generation import ImagePart
from worker.providers._base import ProviderOutput, UpstreamCall
from worker.providers._network import upstream_transport
from worker.providers.chayns_api import ChaynsApi, ThreadGone
from worker.providers.chayns_thread import (
    Outgoing,
    ThreadState,
    decode_state,
    encode_state,
    fingerprint,
    plan_turn,
    render,
)
from worker.providers.chayns_wire import FollowUp, ImageRef, NewMember, NewMessage, NewThread

__all__ = ("ChaynsProvider",)

log = logging.getLogger(__name__)

_CATALOG_TTL_S = 600.0
"""How long the model catalog is trusted before it is fetched again."""
_MISSING_REFETCH_S = 10.0
"""A model missing from the catalog fetches it again, but at most this often: a misconfigured model
must not cost a catalog request per generation."""
_CHAT_MESSAGE = 1
"""``typeId`` of a finished chat message; the agent's reasoning (18) comes before it."""


class _Exchange(msgspec.Struct, frozen=True):
    """A posted message whose answer is awaited."""

    thread_id: str
    user_author_id: str
    posted_at: str
    """The message's ``creationTime``: the answer is among the messages after it."""


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _utf16_length(text: str) -> int:
    """``cursorPosition`` counts as the chayns web client (JavaScript) does."""
    return len(text.encode("utf-16-le")) // 2


class ChaynsProvider:
    def __init__(self, channel: ChaynsChannel, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._channel = channel
        self._api = ChaynsApi(
            channel,
            transport
            or upstream_transport(httpx.Limits(max_connections=channel.max_connections, max_keepalive_connections=64)),
        )
        self._agents: dict[str, str] = {}
        self._catalog_at = -math.inf
        self._catalog_lock = asyncio.Lock()
        self._people: dict[str, tuple[str | None, str]] = {}
        """Account name → (the token it was looked up with, the account's ``personId``)."""

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[ProviderOutput, None]:
        messages = call.request.messages
        agent = await self._agent(call.model)
        person = await self._person(call.account)
        thread, pending = plan_turn(
            messages, decode_state(await call.state.load()), account=call.account.name, model=call.model
        )
        exchange: _Exchange | None = None
        if thread is not None:
            outgoing = render(pending)
            try:
                exchange = await self._follow_up(call.account, person, thread, outgoing)
            except ThreadGone:
                log.info("chayns thread %s is gone; starting a new one", thread.thread_id)
        if exchange is None:
            outgoing = render(messages)
            exchange = await self._new_thread(call.account, person, agent, outgoing)
        reply = await self._answer(call.account, exchange)
        state = ThreadState(
            thread_id=exchange.thread_id,
            user_author_id=exchange.user_author_id,
            account=call.account.name,
            model=call.model,
            covered=len(messages),
            fingerprint=fingerprint(messages),
        )
        await call.state.save(encode_state(state))
        if reply:
            yield TextDelta(reply)
        yield Usage(input_tokens=_estimate_tokens(outgoing.text), output_tokens=_estimate_tokens(reply))
        yield Finished("stop")

    def _catalog_stale(self, model: str) -> bool:
        age = time.monotonic() - self._catalog_at
        return age > _CATALOG_TTL_S or (model not in self._agents and age > _MISSING_REFETCH_S)

    async def _agent(self, model: str) -> str:
        """The ``personId`` of the agent that is ``model``.

        A model the catalog lacks is an :class:`UpstreamError`, not ``ModelNotFound``: the gateway's own
        catalog already accepted the name, so the channel (its config, or chayns' catalog) is at fault, and
        the router may still serve the model from another channel.
        """
        if self._catalog_stale(model):
            async with self._catalog_lock:
                if self._catalog_stale(model):
                    await self._refresh_catalog(model)
        agent = self._agents.get(model)
        if agent is None:
            raise UpstreamError(
                f"upstream '{self._channel.name}' has no model '{model}' in its catalog", code="upstream_model_missing"
            )
        return agent

    async def _refresh_catalog(self, model: str) -> None:
        try:
            entries = await self._api.catalog()
        except GatewayError:
            if model not in self._agents:
                raise
            log.warning("chayns catalog refresh failed; using the one fetched before", exc_info=True)
            return
        self._agents = {entry.show_name: entry.person_id for entry in entries}
        self._catalog_at = time.monotonic()

    async def _person(self, account: Account) -> str:
        """The account's own ``personId``, looked up once per account and token."""
        cached = self._people.get(account.name)
        if cached is not None and cached[0] == account.api_key:
            return cached[1]
        person = (await self._api.user_settings(account.api_key)).person_id
        self._people[account.name] = (account.api_key, person)
        return person

    async def _attach(self, account: Account, person: str, images: Sequence[ImagePart]) -> list[ImageRef]:
        """Image references for a thread message: web URLs as they are, data URLs uploaded first."""
        refs: list[ImageRef] = []
        for image in images:
            if image.url.startswith(("http://", "https://")):
                refs.append(ImageRef(image.url))
            else:
                refs.append(ImageRef(await self._api.upload_image(account.api_key, person, image.url)))
        return refs

    async def _new_thread(self, account: Account, person: str, agent: str, outgoing: Outgoing) -> _Exchange:
        images = await self._attach(account, person, outgoing.images)
        thread = NewThread(
            members=[NewMember(person, is_admin=True), NewMember(agent)],
            type_id=self._channel.thread_type,
            messages=[NewMessage(outgoing.text, images or msgspec.UNSET)],
        )
        created = await self._api.create_thread(account.api_key, thread)
        first = created.messages[0] if created.messages else None
        author = next((member.id for member in created.members if member.person_id == person), None)
        if author is None and first is not None and first.author is not None:
            author = first.author.id
        if first is None or author is None:
            raise UpstreamError(
                f"upstream '{self._channel.name}' created a thread without the posted message",
                code="upstream_bad_reply",
            )
        return _Exchange(str(created.id), str(author), first.creation_time)

    async def _follow_up(self, account: Account, person: str, thread: ThreadState, outgoing: Outgoing) -> _Exchange:
        images = await self._attach(account, person, outgoing.images)
        message = FollowUp(outgoing.text, _utf16_length(outgoing.text), images or msgspec.UNSET)
        posted = await self._api.post_message(account.api_key, thread.thread_id, message)
        author = thread.user_author_id if posted.author is None else str(posted.author.id)
        return _Exchange(thread.thread_id, author, posted.creation_time)

    async def _answer(self, account: Account, exchange: _Exchange) -> str:
        """Poll the thread until the agent's chat message arrives after the posted one."""
        try:
            async with asyncio.timeout(self._channel.reply_timeout_s):
                while True:
                    await asyncio.sleep(self._channel.poll_interval_s)
                    news = await self._api.messages_after(account.api_key, exchange.thread_id, exchange.posted_at)
                    for message in reversed(news):
                        by_agent = message.author is not None and str(message.author.id) != exchange.user_author_id
                        if by_agent and message.type_id == _CHAT_MESSAGE:
                            return message.text or ""
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream '{self._channel.name}' did not answer within {self._channel.reply_timeout_s:g}s"
            ) from None

    async def aclose(self) -> None:
        await self._api.aclose()
