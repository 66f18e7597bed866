"""Helpers for testing the gateway's relay batching end to end.

- `relay_histogram(http)`: the gateway's `usersecrets_gateway_relay_batch_calls` histogram, read from the real
  /metrics text line by line (exact names, no prefix matching).
- `relay_client(app)`: the gateway app's RelayClient, to read `supported` and how many calls are queued.
- `own_server(stack, relay_wrapper=...)`: a second real grpc.aio server over a ServerStack's store and identity,
  built as server/app.py builds one (same CallInterceptor/CallPipeline, same SERVER_OPTIONS), either without
  the Relay service (an older server) or with the real RelayServicer behind a wrapper.
- `gated_gateway(stack, **overrides)`: a gateway in front of such a server whose RelayServicer is wrapped in
  `GatedRelay`, which records each batch and can hold a batch's answer (`hold_batch`), so that the calls sent
  meanwhile queue in the gateway and the test decides which of them travel together.
- small helpers of the relay tests: `singles`, `timed`, `pause_redis` (CLIENT PAUSE), `eventually`,
  `normalised` (ids and timestamps hidden).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import grpc
import redis.asyncio as aioredis
from aiohttp import web

from tests.support.gateway_stack import Reply, RunningGateway, call, running_gateway
from tests.support.stack import ServerStack
from usersecrets.gateway import errors
from usersecrets.gateway.app import UPSTREAM
from usersecrets.gateway.relay import RelayClient
from usersecrets.server.app import SERVER_OPTIONS
from usersecrets.server.crypto import Barrier, KeyRing
from usersecrets.server.interceptor import CallInterceptor, CallPipeline
from usersecrets.server.metrics import ServerMetrics
from usersecrets.server.relay import RelayServicer
from usersecrets.server.service import SecretsService
from usersecrets.server.servicer import UserSecretsServicer
from usersecrets.v1 import relay_pb2 as relay
from usersecrets.v1 import relay_pb2_grpc as relay_grpc
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

HISTOGRAM = "usersecrets_gateway_relay_batch_calls"
_SAMPLE = re.compile(r'([a-z_]+)(?:\{le="([^"]+)"\})? (\S+)\Z')


@dataclasses.dataclass(frozen=True)
class Histogram:
    count: float
    sum: float
    buckets: dict[str, float]  # by the `le` label as exposed ("1.0", ..., "+Inf"), cumulative


def parse_histogram(text: str, name: str = HISTOGRAM) -> Histogram:
    count: float | None = None
    total: float | None = None
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        if found is None:
            continue
        sample, le, value = found.group(1), found.group(2), float(found.group(3))
        if sample == f"{name}_count":
            count = value
        elif sample == f"{name}_sum":
            total = value
        elif sample == f"{name}_bucket" and le is not None:
            buckets[le] = value
    assert count is not None and total is not None, f"{name} missing from /metrics:\n{text}"
    assert buckets.get("+Inf") == count, (buckets, count)
    return Histogram(count, total, buckets)


async def relay_histogram(http: aiohttp.ClientSession) -> Histogram:
    async with http.get("/metrics") as response:
        assert response.status == 200
        return parse_histogram(await response.text())


def relay_client(app: web.Application) -> RelayClient:
    return app[UPSTREAM].relay


def queued(client: RelayClient) -> int:
    # Calls waiting for a batch slot: no public view exists, and the tests must know they are all queued.
    return len(client._pending)


async def wait_queued(client: RelayClient, calls: int, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while queued(client) < calls:
        assert time.monotonic() < deadline, f"{queued(client)} of {calls} calls queued"
        await asyncio.sleep(0.002)


class GatedRelay(relay_grpc.RelayServicer):
    """The real RelayServicer, recording every batch; after `close()`, the next batch runs at once but its
    answer is held until `open()`, so calls arriving meanwhile queue in the gateway and leave together."""

    def __init__(self, inner: RelayServicer) -> None:
        self._inner = inner
        self.batches: list[relay.RelayRequest] = []
        self.holding = asyncio.Event()
        opened = asyncio.Event()
        opened.set()
        self._gates = [opened]  # a batch waits on the gate that was current when it arrived
        self._arrived = asyncio.Event()

    async def wait_batches(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.batches) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        self._gates.append(asyncio.Event())

    def open(self) -> None:
        for gate in self._gates:
            gate.set()

    def open_next(self) -> None:
        """Batches from now on are answered at once; those already held stay held until `open()`."""
        opened = asyncio.Event()
        opened.set()
        self._gates.append(opened)

    async def Batch(self, request: relay.RelayRequest, context: grpc.aio.ServicerContext) -> relay.RelayResponse:
        self.batches.append(request)
        self._arrived.set()
        gate = self._gates[-1]
        response = await self._inner.Batch(request, context)
        if not gate.is_set():
            self.holding.set()
            await gate.wait()
        return response


@asynccontextmanager
async def own_server(
    stack: ServerStack, relay_wrapper: Callable[[RelayServicer], Any] | None = None
) -> AsyncIterator[str]:
    """A real server on a free loopback port sharing `stack`'s Redis, users and key ring; yields its target.
    Without `relay_wrapper` it has no Relay service at all."""
    ring = KeyRing.parse(stack.key_spec)
    servicer = UserSecretsServicer(SecretsService(stack.app.store, stack.app.identity, Barrier(ring)))
    pipeline = CallPipeline(stack.app.identity.authenticate, ServerMetrics())
    server = grpc.aio.server(interceptors=[CallInterceptor(pipeline)], options=SERVER_OPTIONS)
    pb_grpc.add_UserSecretsServiceServicer_to_server(servicer, server)
    if relay_wrapper is not None:
        inner = RelayServicer(servicer, pipeline, stack.config.max_concurrent_rpcs)
        relay_grpc.add_RelayServicer_to_server(relay_wrapper(inner), server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port != 0
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@dataclasses.dataclass
class GatedRig:
    gated: GatedRelay
    gateway: RunningGateway
    http: aiohttp.ClientSession

    @property
    def relay(self) -> RelayClient:
        return relay_client(self.gateway.app)

    async def hold_batch(self, request: Awaitable[Reply]) -> asyncio.Task[Reply]:
        """Sends `request` alone in a batch whose answer is held until `gated.open()`; returns its task."""
        self.gated.close()
        task = asyncio.ensure_future(request)
        async with asyncio.timeout(5):
            await self.gated.holding.wait()
        return task


@asynccontextmanager
async def gated_gateway(stack: ServerStack, **overrides: Any) -> AsyncIterator[GatedRig]:
    gates: list[GatedRelay] = []

    def wrap(inner: RelayServicer) -> GatedRelay:
        gates.append(GatedRelay(inner))
        return gates[0]

    async with (
        own_server(stack, wrap) as target,
        # A held batch keeps its slot (the stall release has its own test), so the test decides what leaves when.
        running_gateway(target, **({"relay_stall_seconds": 60.0} | overrides)) as gateway,
        aiohttp.ClientSession(gateway.url) as http,
    ):
        (gated,) = gates
        try:
            yield GatedRig(gated, gateway, http)
        finally:
            gated.open()  # a test that failed while holding a batch must not hang the teardown


# ---- small helpers of the relay tests ------------------------------------------------------------

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
BUCKETS = ("1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0", "+Inf")


def singles(n: int) -> Histogram:
    """The histogram after n batches of one call each."""
    return Histogram(n, n, dict.fromkeys(BUCKETS, float(n)))


async def timed(request: Awaitable[Reply]) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = await request
    return reply, time.monotonic() - started


async def pause_redis(url: str, ms: int) -> None:
    # The pause ends by itself: an UNPAUSE from a normal client would wait behind the pause too.
    client = aioredis.from_url(url)
    try:
        await client.execute_command("CLIENT", "PAUSE", str(ms), "ALL")
    finally:
        await client.aclose()


async def eventually(http: aiohttp.ClientSession, path: str, token: str, status: int, within: float = 8.0) -> Reply:
    deadline = time.monotonic() + within
    while True:
        reply = await call(http, "GET", path, token=token)
        if reply.status == status or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.05)


def normalised(body: Any) -> Any:
    """Ids and timestamps replaced (after checking their form): the only parts two runs may differ in."""
    if isinstance(body, list):
        return [normalised(b) for b in body]
    if isinstance(body, dict) and "id" in body:
        assert UUID.match(body["id"]) and TIMESTAMP.match(body["created_at"]) and TIMESTAMP.match(body["updated_at"])
        return body | {"id": "<id>", "created_at": "<time>", "updated_at": "<time>"}
    return body


# Shared by the relay test modules.
SECRETS = "/api/v2/users/me/secrets"
SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
MISSING_TOKEN = 'Header "Coder-Session-Token" (or "Authorization: Bearer <token>") must be provided.'
NOT_FOUND = "Resource not found or you do not have access to this resource"
VALIDATION_FAILED = "Validation failed."
RETRY_DETAIL = re.compile(r"Try again in (0\.\d{3}|1\.000) seconds\.\Z")
DEADLINE_BODY = {"message": errors.DEADLINE_EXCEEDED}
