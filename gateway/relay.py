"""REST calls to the server in batches, over the server's Relay service, instead of one gRPC call each.

One grpc.aio call costs hundreds of microseconds of CPU on each side, more than the work it carries. Here
a call is queued and sent at the end of the current event-loop turn, together with every other call queued
in that turn, as one `Relay/Batch` RPC. At most `in_flight` batches are on their way at once; calls that
arrive meanwhile wait for the next one, so the batch grows with the load and the cost per call falls, while
a call on an idle gateway leaves at once. Nothing waits on a timer.

The server runs each call of a batch exactly as if it had come alone (its own token, rate limit, deadline,
log line and metrics) and answers each with its own status. Each REST request also keeps its own deadline
here: it is answered 504 when its time is up, whatever the rest of its batch is doing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from usersecrets.common.futures import fail_waiting
from usersecrets.v1 import relay_pb2 as relay

BATCH_METHOD = "/usersecrets.v1.Relay/Batch"
# A batch's request stays well under grpc's default 4 MiB receive limit on the server: calls join a batch while
# their requests fit in this budget (a call larger than it travels alone, as it would directly).
BATCH_REQUEST_BYTES = 2 * 1024 * 1024
# The largest answer of one call: a list of 50 secrets with every field at its limit is under 450 KiB. The
# gateway's channel accepts relay_max_calls of them in one batch answer (upstream.channel_options).
RESPONSE_BYTES_PER_CALL = 512 * 1024
BATCH_MARGIN_SECONDS = 0.5  # the batch RPC outlives its calls' deadlines a little: the server answers those


class RelayUnsupported(Exception):
    """The server has no Relay service (an older server): nothing of the batch ran; call directly instead."""


@dataclass(slots=True)
class _Pending:
    call: relay.RelayCall
    future: asyncio.Future[relay.RelayResult]
    deadline: float
    size: int


@dataclass(slots=True)
class _Slot:
    timer: asyncio.TimerHandle | None = None
    released: bool = False


def _expire(future: asyncio.Future[relay.RelayResult]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class RelayClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        in_flight: int,
        max_calls: int,
        on_batch: Callable[[int], None] | None = None,
        stall_seconds: float = 0.05,
    ) -> None:
        self._batch = channel.unary_unary(
            BATCH_METHOD,
            request_serializer=relay.RelayRequest.SerializeToString,
            response_deserializer=relay.RelayResponse.FromString,
        )
        self._max_in_flight = in_flight
        self._max_calls = max_calls
        self._pending: list[_Pending] = []
        self._in_flight = 0  # batches holding a slot: out, and out for less than stall_seconds
        self._stall_seconds = stall_seconds
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_batch = on_batch
        self.supported = in_flight > 0

    async def call(
        self, method: str, message: Message, metadata: Iterable[tuple[str, str]], seconds: float
    ) -> relay.RelayResult:
        """The call's own result (any status). Raises AioRpcError when the batch as a whole failed,
        TimeoutError when the call's deadline passed first, RelayUnsupported when the server has no Relay."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[relay.RelayResult] = loop.create_future()
        request = message.SerializeToString()
        call = relay.RelayCall(method=method, request=request, metadata=dict(metadata))
        deadline = loop.time() + seconds
        self._pending.append(_Pending(call, future, deadline, len(request)))
        self._schedule(loop)
        # A plain timer on the future (cheaper than asyncio.timeout): once it fires the call is done for the
        # batcher too, which then neither sends it nor answers it.
        expiry = loop.call_at(deadline, _expire, future)
        try:
            return await future
        finally:
            expiry.cancel()

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and self._in_flight < self._max_in_flight:
            taken = self._take()
            now = loop.time()
            # A call whose caller gave up (its deadline passed, or its request was cancelled) is not sent.
            live = [p for p in taken if not p.future.done() and p.deadline > now]
            if not live:
                continue
            for p in live:  # the time the caller still gives it, now that it leaves: queueing counts
                p.call.timeout_us = max(1, int((p.deadline - now) * 1e6))
            self._in_flight += 1
            slot = _Slot()
            # A batch held up by a slow call (a paused Redis, a long WAIT) gives its slot back after
            # stall_seconds, so the calls queued behind it leave in a batch of their own instead of waiting.
            slot.timer = loop.call_later(self._stall_seconds, self._release, slot)
            task = loop.create_task(self._send(live, max(p.deadline for p in live) - now, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Pending]:
        """The next batch: up to max_calls calls whose requests fit in BATCH_REQUEST_BYTES (at least one)."""
        count, size = 0, 0
        for p in self._pending:
            if count == self._max_calls or (count and size + p.size > BATCH_REQUEST_BYTES):
                break
            count, size = count + 1, size + p.size
        taken, self._pending = self._pending[:count], self._pending[count:]
        return taken

    def _release(self, slot: _Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if slot.timer is not None:
            slot.timer.cancel()
        self._in_flight -= 1
        if self._pending:
            self._schedule(asyncio.get_running_loop())

    async def _send(self, batch: list[_Pending], seconds: float, slot: _Slot) -> None:
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            request = relay.RelayRequest(calls=[p.call for p in batch])
            response = await self._batch(request, timeout=seconds + BATCH_MARGIN_SECONDS, wait_for_ready=False)
        except grpc.aio.AioRpcError as err:
            failure: Exception = err
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.supported = False
                failure = RelayUnsupported()
            fail_waiting((p.future for p in batch), failure)
        except BaseException as exc:  # cancelled at shutdown, or a bug: no caller is left waiting
            fail_waiting((p.future for p in batch), exc)
            raise
        else:
            results = response.results
            for i, p in enumerate(batch):
                if not p.future.done():
                    if i < len(results):
                        p.future.set_result(results[i])
                    else:
                        p.future.set_exception(RuntimeError("relay answered fewer results than calls"))
        finally:
            self._release(slot)
