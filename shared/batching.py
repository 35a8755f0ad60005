"""Redis commands that many tasks issue at about the same time, sent in one pipelined round trip.

Thousands of generations each renewing a lease, checking a log or appending an event would otherwise
pay one round trip each, and most of a round trip's cost is the client's own (a pooled connection taken
and given back, a health check, a read per reply). Here the first command is sent on the next tick
of the loop with whatever joined it; while that batch is out, later commands gather and go together
when it returns. With one caller nothing waits; with many, each round trip carries all that is due.

redis-py's pipeline checks that every script exists with one more round trip per execution; scripts
are sent here with a bare EVALSHA instead, and loaded only when Redis answers NOSCRIPT (after a restart).
Nor is the pipeline used to write a batch: its commands are packed by hiredis (C) and written on a pooled
connection with redis-py's own connection methods, and each reply is read and parsed as redis-py would
(its response callback applied); redis-py's asyncio pipeline packs in Python, which was a tenth of a
worker's CPU when thousands of streams were relaying.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ("RedisBatcher",)

_Arg = str | bytes | int | float


class _Call:
    __slots__ = ("args", "future", "script")

    def __init__(self, args: tuple[_Arg, ...], future: asyncio.Future[Any], script: AsyncScript | None) -> None:
        self.args = args
        self.future = future
        self.script = script


class RedisBatcher:
    """Sends the commands given to :meth:`command` and :meth:`script` in pipelined batches.

    Only for quick commands: a blocking one (``BLPOP``, ``XREAD BLOCK``) would hold up every other.
    A lost connection fails every command of its batch with the error, as one command alone would.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    def command(self, name: str, *args: _Arg) -> asyncio.Future[Any]:
        """Run one command (``"EXISTS", key``); its answer is parsed as redis-py parses it alone.

        The command is queued at once, so several given before the first is awaited share a round trip."""
        return self._submit((name, *args), None)

    async def commands(self, *commands: tuple[_Arg, ...]) -> list[Any]:
        """Run several commands in order, in the same round trip; if any fails, raise the first error."""
        return list(await asyncio.gather(*[self._submit(args, None) for args in commands]))

    def script(self, script: AsyncScript, keys: Sequence[_Arg], args: Sequence[_Arg]) -> asyncio.Future[Any]:
        """Run a registered script, as ``script(keys=keys, args=args)`` would (queued like :meth:`command`)."""
        return self._submit(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def _submit(self, args: tuple[_Arg, ...], script: AsyncScript | None) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(args, future, script))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        return future

    async def _send(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                answers = await self._answers(batch)
            except Exception as exc:  # the connection failed: every command of the batch did
                answers = [exc] * len(batch)
            for call, answer in zip(batch, answers, strict=True):
                if call.future.done():  # its caller was cancelled
                    continue
                if isinstance(answer, Exception):
                    call.future.set_exception(answer)
                else:
                    call.future.set_result(answer)

    async def _answers(self, batch: list[_Call]) -> list[Any]:
        answers = await self._execute(batch)
        unknown = [call for call, answer in zip(batch, answers, strict=True) if isinstance(answer, NoScriptError)]
        if not unknown:
            return answers
        # Redis restarted and forgot the scripts: load them and run those calls again, once.
        for script in {id(call.script): call.script for call in unknown}.values():
            assert script is not None
            await self._redis.script_load(script.script)
        retried = dict(zip(map(id, unknown), await self._execute(unknown), strict=True))
        return [retried.get(id(call), answer) for call, answer in zip(batch, answers, strict=True)]

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        pool = self._redis.connection_pool
        connection = await pool.get_connection()
        try:
            packed = [hiredis.pack_command(call.args) for call in batch]  # type: ignore[arg-type]
            await connection.send_packed_command(b"".join(packed))
            answers: list[Any] = []
            callbacks = self._redis.response_callbacks
            for call in batch:
                try:
                    answer = await connection.read_response()
                except ResponseError as exc:
                    answers.append(exc)
                    continue
                callback = callbacks.get(str(call.args[0]))  # the command name
                answers.append(answer if callback is None else callback(answer))
            return answers
        except BaseException:
            # Replies may be left unread: the connection cannot be reused.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
