"""Who may use the console: sessions, one-time login links and the brake on guessed admin keys.

A session is a random token in an HttpOnly cookie; Redis keeps only the token's digest (so a read of
Redis yields no usable cookie) with the session's CSRF token, and lets it expire. A one-time login link
(printed by ``aiapi up``) is redeemed with ``GETDEL``, so it works once. Wrong admin keys are counted
per client address in a fixed window; past the limit every attempt is refused, right key or not, until
the window ends, so guessing costs the window's length per few tries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

import msgspec

from shared.keys import ConsoleKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ("ConsoleAuth", "ConsoleSession", "TooManyAttempts", "same_secret", "token_digest")

SESSION_TTL_S = 12 * 3600
LINK_TTL_S = 15 * 60
MAX_FAILURES = 10
FAILURE_WINDOW_S = 300


class TooManyAttempts(Exception):
    """This client sent too many wrong admin keys; it may try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after = retry_after


class ConsoleSession(msgspec.Struct, frozen=True):
    csrf: str
    """The token every state-changing form and fetch of this session must carry."""
    created: int


_decoder = msgspec.json.Decoder(ConsoleSession)
_encoder = msgspec.json.Encoder()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so the answer's timing tells nothing about the secret."""
    return hmac.compare_digest(given.encode(), expected.encode())


class ConsoleAuth:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def check_key(self, given: str, expected: str, client: str) -> bool:
        """Whether ``given`` is the admin key; a wrong one counts against ``client``.

        Each attempt takes a place in the window's count before the key is compared (one transaction),
        so parallel guesses cannot slip past the limit; a right key gives its place back. Raises
        :class:`TooManyAttempts` once the client has used up its tries for the window.
        """
        counter = ConsoleKeys.failures(client)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, FAILURE_WINDOW_S, nx=True)
            pipe.ttl(counter)
            attempts, _, ttl = await pipe.execute()
        if attempts > MAX_FAILURES:
            raise TooManyAttempts(max(1, int(ttl)))
        if same_secret(given, expected):
            await self._redis.decr(counter)
            return True
        return False

    async def open_session(self) -> str:
        """A new session's cookie value."""
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(csrf=secrets.token_urlsafe(24), created=int(time.time()))
        await self._redis.set(ConsoleKeys.session(token_digest(token)), _encoder.encode(session), ex=SESSION_TTL_S)
        return token

    async def session(self, token: str) -> ConsoleSession | None:
        if not token:
            return None
        data: bytes | None = await self._redis.get(ConsoleKeys.session(token_digest(token)))
        return _decoder.decode(data) if data else None

    async def close_session(self, token: str) -> None:
        await self._redis.delete(ConsoleKeys.session(token_digest(token)))

    async def issue_link(self) -> str:
        """A one-time login token, valid for :data:`LINK_TTL_S`."""
        token = secrets.token_urlsafe(32)
        await self._redis.set(ConsoleKeys.login_link(token_digest(token)), b"1", ex=LINK_TTL_S)
        return token

    async def redeem_link(self, token: str) -> bool:
        """Whether ``token`` was a live login link; it is spent either way."""
        return await self._redis.getdel(ConsoleKeys.login_link(token_digest(token))) is not None
