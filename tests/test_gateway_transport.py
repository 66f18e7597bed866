"""What the gateway sends to and reads from gRPC, checked against a real grpc.aio server that records calls.

The recording servicer is a real server on a free port (not a mock of gRPC): it answers GetUserSecret by the
requested name, so each test can make it succeed, fail with any status and details, raise, or stall.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.support.gateway_stack import RunningGateway, call, running_gateway
from usersecrets.gateway import errors
from usersecrets.gateway.app import CONFIG
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

ITEM = "/api/v2/users/me/secrets"


@dataclasses.dataclass
class Seen:
    metadata: dict[str, str]
    time_remaining: float | None
    request: Any


class Recording(pb_grpc.UserSecretsServiceServicer):
    def __init__(self) -> None:
        self.seen: list[Seen] = []

    async def GetUserSecret(self, request: pb.GetUserSecretRequest, context: grpc.aio.ServicerContext) -> Any:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.seen.append(Seen(metadata, context.time_remaining(), request))
        name = request.name
        if name.startswith("code-"):
            code = grpc.StatusCode[name.removeprefix("code-")]
            await context.abort(code, f"server says {code.name}")
        if name == "rich":
            await context.abort_with_status(rpc_status.to_status(_rich_status()))
        if name == "raise":
            raise RuntimeError("text that must not reach the client: hunter2")
        if name == "slow":
            await asyncio.sleep(5)
        return pb.UserSecret(id="i", name=name)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _rich_status() -> status_pb2.Status:
    return status_pb2.Status(
        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
        message="Rate limit exceeded.",
        details=[
            _pack(error_details_pb2.ErrorInfo(reason="RATE_LIMITED", metadata={"detail": "slow down"})),
            _pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=1))),
        ],
    )


@dataclasses.dataclass
class Rig:
    servicer: Recording
    gateway: RunningGateway
    http: aiohttp.ClientSession


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    servicer = Recording()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_UserSecretsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with (
            running_gateway(f"127.0.0.1:{port}", default_deadline_seconds=10.0) as gateway,
            aiohttp.ClientSession(gateway.url) as http,
        ):
            yield Rig(servicer, gateway, http)
    finally:
        await server.stop(0)


async def test_headers_travel_as_metadata(rig: Rig) -> None:
    headers = {
        "Coder-Session-Token": "abc-def",
        "Authorization": "Bearer xyz",
        "X-Request-Id": "rid-1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=1",
        "X-Other": "not forwarded",
    }
    reply = await call(rig.http, "GET", f"{ITEM}/k", headers=headers)
    assert reply.status == 200 and reply.headers["X-Request-Id"] == "rid-1"
    (seen,) = rig.servicer.seen
    assert seen.request == pb.GetUserSecretRequest(user="me", name="k")
    want = {
        "coder-session-token": "abc-def",
        "authorization": "Bearer xyz",
        "x-request-id": "rid-1",
        "traceparent": headers["traceparent"],
        "tracestate": "vendor=1",
        "x-forwarded-for": "127.0.0.1",
    }
    assert {k: seen.metadata.get(k) for k in want} == want
    assert "x-other" not in seen.metadata


async def test_generated_request_id_is_sent_and_echoed(rig: Rig) -> None:
    reply = await call(rig.http, "GET", f"{ITEM}/k")
    assert rig.servicer.seen[0].metadata["x-request-id"] == reply.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("header", "low", "high"),
    # Wide margins below each deadline: the first call on a fresh channel also connects.
    [(None, 8.0, 10.0), ("3S", 1.0, 3.0), ("800m", 0.0, 0.8), ("1M", 55.0, 60.0)],
    ids=["default", "seconds", "millis", "minutes"],
)
async def test_deadline(rig: Rig, header: str | None, low: float, high: float) -> None:
    headers = {} if header is None else {"Grpc-Timeout": header}
    assert (await call(rig.http, "GET", f"{ITEM}/k", headers=headers)).status == 200
    remaining = rig.servicer.seen[0].time_remaining
    # grpc rounds a deadline up when it encodes grpc-timeout (to whole units), so allow a hair above `high`.
    assert remaining is not None and low < remaining <= high * 1.01 + 0.01, remaining


@pytest.mark.parametrize("header", ["100m", "1n", None], ids=["100ms", "1ns", "default 0.3s"])
async def test_deadline_passes_504(rig: Rig, header: str | None) -> None:
    target = rig.gateway.app[CONFIG].grpc_target
    async with running_gateway(target, default_deadline_seconds=0.3) as gw, aiohttp.ClientSession(gw.url) as http:
        started = time.monotonic()
        headers = {} if header is None else {"Grpc-Timeout": header}
        reply = await call(http, "GET", f"{ITEM}/slow", headers=headers)
    assert (reply.status, reply.json) == (504, {"message": errors.DEADLINE_EXCEEDED})
    assert time.monotonic() - started < 2


CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]


@pytest.mark.parametrize("code", CODES, ids=[c.name for c in CODES])
async def test_every_status_code_end_to_end(rig: Rig, code: grpc.StatusCode) -> None:
    reply = await call(rig.http, "GET", f"{ITEM}/code-{code.name}")
    want_message = {
        grpc.StatusCode.UNAVAILABLE: errors.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED: errors.BUSY,
        grpc.StatusCode.DEADLINE_EXCEEDED: errors.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED: errors.CANCELLED,
        grpc.StatusCode.UNKNOWN: errors.INTERNAL,
        grpc.StatusCode.INTERNAL: errors.INTERNAL,
        grpc.StatusCode.DATA_LOSS: errors.INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED: errors.NOT_IMPLEMENTED,
    }.get(code, f"server says {code.name}")
    assert (reply.status, reply.json) == (errors.HTTP_STATUS_BY_CODE[code], {"message": want_message})


async def test_rich_status_details(rig: Rig) -> None:
    reply = await call(rig.http, "GET", f"{ITEM}/rich")
    assert (reply.status, reply.json) == (429, {"message": "Rate limit exceeded.", "detail": "slow down"})
    assert reply.headers["Retry-After"] == "3"


async def test_servicer_exception_text_never_reaches_the_client(rig: Rig) -> None:
    reply = await call(rig.http, "GET", f"{ITEM}/raise")
    assert (reply.status, reply.json) == (500, {"message": "Internal error."})


async def test_unimplemented_rpc_is_501(rig: Rig) -> None:
    reply = await call(rig.http, "GET", ITEM)
    assert (reply.status, reply.json) == (501, {"message": "Not implemented."})
