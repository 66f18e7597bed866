"""Helpers for tests of the Relay service: build relayed calls, send a batch, and read what a direct call learns."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.support.stack import ServerStack
from usersecrets.v1 import relay_pb2 as relay
from usersecrets.v1 import relay_pb2_grpc as relay_grpc
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

SERVICE_PATH = "/usersecrets.v1.UserSecretsService/"
ACCESS_LOGGER = "usersecrets.server.access"
BatchFn = Callable[..., Awaitable[list[relay.RelayResult]]]


def item(
    method: str,
    request: Message | bytes,
    token: str | None = None,
    timeout_us: int = 0,
    **metadata: str,
) -> relay.RelayCall:
    """One relayed call. `method` is a short UserSecretsService name unless it starts with "/"."""
    full = method if method.startswith("/") or not method else SERVICE_PATH + method
    given = dict(metadata)
    if token is not None:
        given["coder-session-token"] = token
    body = request if isinstance(request, bytes) else request.SerializeToString()
    return relay.RelayCall(method=full, request=body, metadata=given, timeout_us=timeout_us)


@asynccontextmanager
async def relay_batch(stack: ServerStack, rpc_seconds: float = 10.0) -> AsyncIterator[BatchFn]:
    """A function that sends one Relay/Batch to the stack's server and returns its results."""
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = relay_grpc.RelayStub(channel)

        async def batch(
            calls: list[relay.RelayCall], metadata: tuple[tuple[str, str], ...] = ()
        ) -> list[relay.RelayResult]:
            response = await stub.Batch(relay.RelayRequest(calls=calls), timeout=rpc_seconds, metadata=metadata)
            assert len(response.results) == len(calls), (len(response.results), len(calls))
            return list(response.results)

        yield batch


async def direct_status(
    stub: pb_grpc.UserSecretsServiceStub, method: str, request: Message, metadata: Mapping[str, str]
) -> status_pb2.Status:
    """The google.rpc.Status a direct call gets: its rich status, or a plain one when it carries no details."""
    call = getattr(stub, method)(request, metadata=tuple(metadata.items()))
    with suppress(grpc.aio.AioRpcError):
        await call
    code = await call.code()
    assert code != grpc.StatusCode.OK, f"{method} succeeded directly"
    rich = await rpc_status.aio.from_call(call)
    if rich is not None:
        return rich
    return status_pb2.Status(code=code.value[0], message=await call.details() or "")


def parsed(result: relay.RelayResult, message_class: type[Any]) -> Any:
    """The response of a successful item; fails on any status but OK."""
    assert result.status == status_pb2.Status(), result.status
    return message_class.FromString(result.response)


def plain(code: grpc.StatusCode, message: str) -> status_pb2.Status:
    """A status without details, as grpc itself sends (deadline, unknown method, busy)."""
    return status_pb2.Status(code=code.value[0], message=message)


@dataclass(frozen=True)
class Described:
    """A google.rpc.Status, unpacked: what the tests assert on exactly."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    detail: str | None = None
    violations: tuple[tuple[str, str], ...] = ()
    retry_seconds: float | None = None


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def described(status: status_pb2.Status) -> Described:
    reason = detail = retry = None
    violations: list[tuple[str, str]] = []
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            assert reason is None and info.domain == "usersecrets.v1", info
            reason, detail = info.reason, info.metadata.get("detail")
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            packed.Unpack(info_retry)
            retry = info_retry.retry_delay.ToNanoseconds() / 1e9
        else:
            raise AssertionError(f"unexpected detail type {packed.type_url}")
    return Described(_CODES[status.code], status.message, reason, detail, tuple(sorted(violations)), retry)


def calls_total(stack: ServerStack, method: str, code: str) -> float:
    value = stack.app.metrics.registry.get_sample_value(
        "usersecrets_grpc_calls_total", {"method": method, "code": code}
    )
    return value or 0.0


def access_lines(text: str) -> list[dict[str, Any]]:
    """The server's "rpc" access lines in captured log text that a JsonFormatter wrote."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == ACCESS_LOGGER and line["msg"] == "rpc"]


async def pause(redis_url: str, ms: int, mode: str = "ALL") -> None:
    """Pause Redis from a client of its own; the pause ends by itself (an UNPAUSE would wait behind it)."""
    client = aioredis.from_url(redis_url)
    try:
        await client.execute_command("CLIENT", "PAUSE", str(ms), mode)
    finally:
        await client.aclose()


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# Shared by the relay test modules.
CANARY = "canary-7c3d-relay-value"
SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
MISSING = 'Header "Coder-Session-Token" (or "Authorization: Bearer <token>") must be provided.'
AUTHN = "UNAUTHENTICATED"
FORMAT = "Invalid API key format."
INVALID = "API key is invalid."
NOT_FOUND = "Resource not found or you do not have access to this resource"
UNKNOWN_TOKEN = "abcdefghij-" + "x" * 22
TOO_MANY = "A relay batch holds at most 256 calls."
UNKNOWN_METHOD = "Method not found."
UNPARSABLE = "The request message could not be parsed."
BUSY = "Too many calls in flight. Try again later."
DEADLINE = "Deadline exceeded."
C = grpc.StatusCode


def create(name: str = "s", value: str = CANARY, user: str = "me", **fields: str) -> pb.CreateUserSecretRequest:
    return pb.CreateUserSecretRequest(user=user, name=name, value=value, **fields)


def get(name: str = "s", user: str = "me") -> pb.GetUserSecretRequest:
    return pb.GetUserSecretRequest(user=user, name=name)


def listing(user: str = "me") -> pb.ListUserSecretsRequest:
    return pb.ListUserSecretsRequest(user=user)
