"""Reads of one standalone Redis, pipelined: the reads issued in one event-loop turn leave together.

A single command through redis-py's asyncio client costs well over 100 microseconds of Python (connection
checkout from the bounded pool, timeouts, retry wrapper, parsing), several times what Redis spends on it. The
calls of a relay batch start in the same loop turn, and so do their token lookups and secret reads (HGETALL,
the list script); sent as one non-transactional pipeline they share one checkout, one write and one timeout.
Nothing waits on a timer: a lone read leaves at the end of the turn that issued it, as a plain command.

Each read keeps the semantics it has alone: an error reply fails only its own caller; a connection lost under
the pipeline is retried by the client's one quick retry; a script Redis does not know (NOSCRIPT) is loaded and
sent again. A caller that gives up (its deadline) stops waiting, but the pipeline is not cancelled halfway (its
connection stays clean) and may still run its command: harmless for a read, which is why writes never come
here (durable.write). On Redis Cluster the store keeps its single-command paths (a pipeline would span slots).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from usersecrets.common.futures import fail_waiting

MAX_PIPELINE = 128  # commands per pipeline; more in one turn leave in several
SCRIPT_ATTEMPTS = 2  # NOSCRIPT once (Redis restarted or flushed its scripts), then it is loaded


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class PipelinedReads:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[_Command] = []
        self._running: set[asyncio.Task[None]] = set()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return await self._submit("HGETALL", key)

    async def run_script(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """A script that only reads (writes never come here: see the module docstring)."""
        for _ in range(SCRIPT_ATTEMPTS):
            try:
                return await self._submit("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._redis.script_load(script.script)  # NOSCRIPT: it did not run
        raise NoScriptError("the script could not be loaded")

    async def _submit(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append(_Command(args, future))
        return await future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), MAX_PIPELINE):
            commands = [c for c in queued[start : start + MAX_PIPELINE] if not c.future.done()]
            if commands:
                task = asyncio.get_running_loop().create_task(self._send(commands))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _send(self, commands: list[_Command]) -> None:
        try:
            if len(commands) == 1:  # a pipeline of one costs more than the plain command
                results = [await self._redis.execute_command(*commands[0].args)]
            else:
                pipe = self._redis.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command.args)
                # raise_on_error=False: an error reply fails its own caller only, and redis-py's pipeline errors
                # would quote the command's arguments (a key names a secret, a script's arguments hold data).
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            fail_waiting((c.future for c in commands), exc)
            if not isinstance(exc, Exception):
                raise
            return
        for command, result in zip(commands, results, strict=True):
            if command.future.done():
                continue
            if isinstance(result, Exception):
                command.future.set_exception(result)
            else:
                command.future.set_result(result)


def pipelined_reads(redis: Any) -> PipelinedReads | None:
    """Pipelined reads for a standalone (or Sentinel-managed) client; None for a cluster client."""
    return PipelinedReads(redis) if isinstance(redis, Redis) else None
