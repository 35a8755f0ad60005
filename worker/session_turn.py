"""A generation's part in its conversation: holding the session gate, marking and binding the reply.

While the run lasts, the lease heartbeat also renews the session's gate (:meth:`SessionTurn.hold`); a
run that finds the gate taken over stops. At the end the gate is released; before that, the reply is made
recognisable in the next request: in ``zero_width`` mode by appending the session id in invisible
characters, in ``hash`` mode by binding the turn's fingerprint to the session.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from shared.events import TextDelta, ToolCallDelta, ToolCallStarted
from shared.generation import Message, TextPart, ToolCall
from shared.keys import SessionKeys, binding_key
from shared.sessions import encode_zero_width, turn_fingerprint

if TYPE_CHECKING:
    from shared.generation import GenerationRequest, SessionRef
    from shared.scripts import Scripts
    from worker.providers import ProviderOutput, SessionState

__all__ = ("SessionTurn",)

log = logging.getLogger(__name__)


class SessionTurn:
    def __init__(self, scripts: Scripts, request: GenerationRequest, session: SessionRef, *, ttl_s: int) -> None:
        self._scripts = scripts
        self._request = request
        self._session = session
        self._gate = SessionKeys(session.owner, session.id).gate
        self._ttl_s = ttl_s
        self._text: list[str] = []
        self._calls: dict[int, ToolCall] = {}
        self._released = False

    @property
    def gated(self) -> bool:
        return self._session.fence > 0

    def observe(self, output: ProviderOutput) -> None:
        """Remember the reply as the client will see it."""
        if isinstance(output, TextDelta):
            self._text.append(output.text)
        elif isinstance(output, ToolCallStarted):
            self._calls[output.index] = ToolCall(output.call_id, output.name, "")
        elif isinstance(output, ToolCallDelta) and output.index in self._calls:
            self._calls[output.index].arguments += output.arguments

    def marker(self) -> TextDelta | None:
        """The text that ends the reply: the session id in zero-width characters, in that mode."""
        return TextDelta(encode_zero_width(self._session.id)) if self._session.zero_width else None

    async def hold(self, ttl_ms: int) -> bool:
        """Renew the gate; ``False`` once another run took it over."""
        if not self.gated or self._released:
            return True
        return bool(await self._scripts.batcher.script(self._scripts.hold, [self._gate], [self._request.id, ttl_ms]))

    async def bind(self) -> None:
        """In hash mode, bind the finished reply to the session. Called before the reply's last event
        goes out, so the client's next request, which echoes the reply, always finds the binding."""
        if self._session.zero_width or not self._request.messages:
            return
        reply = Message("assistant", [TextPart("".join(self._text))], tool_calls=list(self._calls.values()))
        binding = binding_key(self._session.owner, turn_fingerprint(self._request.messages[-1], reply))
        try:
            # A run that was taken over must not bind its reply: the client continues from the newer one.
            # (The binding lives outside the session's slot, so this check and the write are two calls.)
            batcher = self._scripts.batcher
            if self.gated and await batcher.command("GET", self._gate) != self._request.id.encode():
                log.info("session %s: reply not bound, a newer run took over", self._session.id)
                return
            await batcher.command("SET", binding, self._session.id, "EX", self._ttl_s)
        except RedisError as exc:
            log.warning("session %s: could not bind the reply: %s", self._session.id, exc)

    def provider_state(self, channel: str) -> SessionState:
        """The session's state for the provider of ``channel``; writes are fenced like events."""
        key = SessionKeys(self._session.owner, self._session.id).provider_state(channel)
        return _ProviderState(self._scripts, key, self._gate, self._request.id, gated=self.gated, ttl_s=self._ttl_s)

    async def release(self) -> None:
        """Give the gate back, unless another run took it over."""
        if not self.gated or self._released:
            return
        self._released = True
        try:
            await self._scripts.release(keys=[self._gate], args=[self._request.id])
        except RedisError as exc:
            log.warning("session %s: could not release the gate (it will expire): %s", self._session.id, exc)


class _ProviderState:
    def __init__(self, scripts: Scripts, key: str, gate: str, generation_id: str, *, gated: bool, ttl_s: int) -> None:
        self._scripts = scripts
        self._key = key
        self._gate = gate
        self._generation_id = generation_id
        self._gated = gated
        self._ttl_ms = ttl_s * 1000

    async def load(self) -> bytes | None:
        value: bytes | None = await self._scripts.redis.get(self._key)
        return value

    async def save(self, value: bytes) -> None:
        args: list[bytes | str | int] = [value, self._ttl_ms, self._generation_id, int(self._gated)]
        if not await self._scripts.save_state(keys=[self._key, self._gate], args=args):
            log.info("%s: provider state not saved, a newer run took over the session", self._key)
