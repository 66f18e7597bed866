"""Hot reads of one standalone Redis, pipelined: the reads issued in one event-loop turn leave together.

A single command through redis-py's asyncio client costs well over 100 microseconds of Python (connection
checkout from the bounded pool, timeouts, retry wrapper, parsing), several times what Redis spends on it. The
calls of a relay batch start in the same loop turn, and so do their token and secret lookups; sent as one
non-transactional pipeline they share one checkout, one write and one timeout. Nothing waits on a timer: a
lone read leaves at the end of the turn that issued it.

Only reads go this way (HGETALL of a token or a secret): a pipeline that fails as a whole is retried by the
client's one quick retry, which is harmless for reads and would not be for writes. A caller that gives up
(its deadline) stops waiting; the pipeline itself is never cancelled halfway, so its connection stays clean.
On Redis Cluster the store keeps its single-command paths (a pipeline would span slots).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

MAX_PIPELINE = 128  # commands per pipeline; more in one turn leave in several


@dataclass(slots=True)
class _Read:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class PipelinedReads:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[_Read] = []
        self._running: set[asyncio.Task[None]] = set()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return await self._submit("HGETALL", key)

    async def _submit(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append(_Read(args, future))
        return await future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), MAX_PIPELINE):
            reads = [r for r in queued[start : start + MAX_PIPELINE] if not r.future.done()]
            if reads:
                task = asyncio.get_running_loop().create_task(self._send(reads))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _send(self, reads: list[_Read]) -> None:
        try:
            if len(reads) == 1:  # a pipeline of one costs more than the plain command
                results = [await self._redis.execute_command(*reads[0].args)]
            else:
                pipe = self._redis.pipeline(transaction=False)
                for read in reads:
                    pipe.execute_command(*read.args)
                # raise_on_error=False: an error reply fails its own read only, and redis-py's pipeline errors
                # would quote the command's arguments (a key names a secret).
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for read in reads:
                if read.future.done():
                    continue
                if isinstance(exc, Exception):
                    read.future.set_exception(exc)
                else:
                    read.future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for read, result in zip(reads, results, strict=True):
            if read.future.done():
                continue
            if isinstance(result, Exception):
                read.future.set_exception(result)
            else:
                read.future.set_result(result)


def pipelined_reads(redis: Any) -> PipelinedReads | None:
    """Pipelined reads for a standalone (or Sentinel-managed) client; None for a cluster client."""
    return PipelinedReads(redis) if isinstance(redis, Redis) else None
