"""The Relay service: many UserSecretsService calls in one RPC, each run as if it had come on its own.

A batch is only transport. Every call in it goes through the same CallPipeline as a direct call (its own
token, rate limit, deadline, access log line and metrics) and is answered with the status and details the
direct call would have got. Calls of one batch run concurrently, each in its own task (so one call's
principal and request id never leak into another's). Calls in flight through relays are bounded per process,
like direct calls are by grpc's `maximum_concurrent_rpcs`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.api import annotations_pb2
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from usersecrets.common.relay import MAX_CALLS
from usersecrets.server.interceptor import CallPipeline
from usersecrets.v1 import relay_pb2 as relay
from usersecrets.v1 import relay_pb2_grpc as relay_grpc
from usersecrets.v1 import usersecrets_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["UserSecretsService"]
# Only the methods with a REST route: the gateway needs no other, and a mesh policy that keeps the value RPC
# (ListUserSecretValues) to the workspace builders cannot be sidestepped through the relay.
RELAYED = tuple(m for m in SERVICE.methods if m.GetOptions().HasExtension(annotations_pb2.http))
TOO_MANY_CALLS = f"A relay batch holds at most {MAX_CALLS} calls."
UNKNOWN_METHOD = "Method not found."
BAD_REQUEST = "The request message could not be parsed."
BUSY = "Too many calls in flight. Try again later."

Handler = Callable[[Any, Any], Awaitable[Any]]


def _failed(code: int, message: str) -> relay.RelayResult:
    return relay.RelayResult(status=status_pb2.Status(code=code, message=message))


class RelayServicer(relay_grpc.RelayServicer):
    def __init__(self, servicer: object, pipeline: CallPipeline, max_in_flight: int) -> None:
        self._methods: dict[str, tuple[str, type[Any], Handler]] = {
            f"/{SERVICE.full_name}/{m.name}": (
                m.name,
                message_factory.GetMessageClass(m.input_type),
                getattr(servicer, m.name),
            )
            for m in RELAYED
        }
        self._pipeline = pipeline
        self._max_in_flight = max_in_flight or None
        self._in_flight = 0

    async def Batch(self, request: relay.RelayRequest, context: grpc.aio.ServicerContext) -> relay.RelayResponse:
        if len(request.calls) > MAX_CALLS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, TOO_MANY_CALLS)
        received = asyncio.get_running_loop().time()
        # gather runs each call in a task of its own, with a copy of this context: contextvars stay per call.
        results = await asyncio.gather(*(self._one(call, received) for call in request.calls))
        return relay.RelayResponse(results=results)

    async def _one(self, call: relay.RelayCall, received: float) -> relay.RelayResult:
        entry = self._methods.get(call.method)
        if entry is None:
            return _failed(code_pb2.UNIMPLEMENTED, UNKNOWN_METHOD)
        short, request_class, handler = entry
        try:
            message = request_class.FromString(call.request)
        except DecodeError:
            return _failed(code_pb2.INVALID_ARGUMENT, BAD_REQUEST)
        if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
            return _failed(code_pb2.RESOURCE_EXHAUSTED, BUSY)
        loop = asyncio.get_running_loop()
        deadline = received + call.timeout_us / 1e6 if call.timeout_us > 0 else None

        def time_remaining() -> float | None:
            return None if deadline is None else deadline - loop.time()

        self._in_flight += 1
        try:
            # The servicer's methods take no data from the context; a relayed call has none of its own. The
            # deadline covers the whole call, authentication included, as grpc's does for a direct call.
            response, status = await self._pipeline.run(
                short, call.metadata, time_remaining, lambda: handler(message, None), deadline
            )
        finally:
            self._in_flight -= 1
        if status is not None:
            return relay.RelayResult(status=status)
        return relay.RelayResult(response=response.SerializeToString())
