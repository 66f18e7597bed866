"""Outages through REST: the gRPC server stopped and restarted, Redis killed or paused, rate limits, deadlines.

Redis faults use a Redis each test starts itself (never the session's): killed with SIGKILL, paused with
CLIENT PAUSE, restarted on the same port from its append-only file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.support.gateway_stack import GatewayStack, Reply, call, gateway_in_front_of
from tests.support.redis_proc import RedisProcess
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway import errors

SECRETS = "/api/v2/users/me/secrets"
STORE_DOWN = "The secrets store is unavailable. Try again later."


async def eventually(gw: GatewayStack, path: str, token: str | None, status: int, within: float = 8.0) -> Reply:
    deadline = time.monotonic() + within
    while True:
        reply = await call(gw.http, "GET", path, token=token)
        if reply.status == status or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.05)


@pytest.fixture
async def stack(own_redis: RedisProcess) -> AsyncIterator[GatewayStack]:
    async with running_server(own_redis.url) as server, gateway_in_front_of(server) as gw:
        yield gw


async def test_grpc_server_down_is_fast_503_then_recovers(stack: GatewayStack) -> None:
    _, token = await stack.user("alice")
    created = await call(stack.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
    assert created.status == 201
    await stack.server.app.stop(0)
    try:
        started = time.monotonic()
        for method, path in [("GET", SECRETS), ("GET", f"{SECRETS}/k"), ("DELETE", f"{SECRETS}/k")]:
            reply = await call(stack.http, method, path, token=token)
            assert (reply.status, reply.json) == (503, {"message": errors.UNAVAILABLE}), method
        reply = await call(stack.http, "POST", SECRETS, token=token, body={"name": "k2", "value": "v"})
        assert (reply.status, reply.json) == (503, {"message": errors.UNAVAILABLE})
        assert time.monotonic() - started < 2.0, "a down server must not hold requests until their deadline"
        health = await call(stack.http, "GET", "/healthz")
        assert (health.status, json.loads(health.raw)["status"]) == (503, "UNREACHABLE")
    finally:
        restarted = await stack.restart_server()
    try:
        # The same gateway, its one channel reconnecting by itself: no restart of the gateway.
        reply = await eventually(stack, f"{SECRETS}/k", token, 200)
        assert (reply.status, reply.json) == (200, created.json)
        assert json.loads((await call(stack.http, "GET", SECRETS, token=token)).raw) == [created.json]
        assert (await eventually(stack, "/healthz", None, 200)).status == 200
    finally:
        await restarted.stop(0)


async def test_redis_down_is_503_and_unhealthy_then_recovers(stack: GatewayStack, own_redis: RedisProcess) -> None:
    _, token = await stack.user("alice")
    created = await call(stack.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
    assert created.status == 201
    own_redis.kill()
    try:
        reply = await call(stack.http, "GET", SECRETS, token=token)
        assert (reply.status, reply.json) == (503, {"message": STORE_DOWN})
        reply = await call(stack.http, "POST", SECRETS, token=token, body={"name": "k2", "value": "v"})
        assert (reply.status, reply.json) == (503, {"message": STORE_DOWN})
        health = await eventually(stack, "/healthz", None, 503)
        assert (health.status, json.loads(health.raw)["status"]) == (503, "NOT_SERVING")
    finally:
        own_redis.start()
    reply = await eventually(stack, SECRETS, token, 200)
    assert (reply.status, json.loads(reply.raw)) == (200, [created.json])  # no partial write of k2
    assert (await eventually(stack, "/healthz", None, 200)).status == 200


async def test_paused_redis_passes_the_deadline_504(stack: GatewayStack, own_redis: RedisProcess) -> None:
    _, token = await stack.user("alice")
    client = aioredis.from_url(own_redis.url)
    try:
        # The pause ends by itself: an UNPAUSE from a normal client would wait behind the pause too.
        await client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        started = time.monotonic()
        reply = await call(stack.http, "GET", SECRETS, token=token, headers={"Grpc-Timeout": "300m"})
        assert (reply.status, reply.json) == (504, {"message": errors.DEADLINE_EXCEEDED})
        assert time.monotonic() - started < 1.2
    finally:
        await client.aclose()
    reply = await eventually(stack, SECRETS, token, 200)
    assert (reply.status, reply.raw) == (200, b"[]")


async def test_a_write_whose_deadline_passes_before_it_runs_stores_nothing(
    stack: GatewayStack, own_redis: RedisProcess
) -> None:
    _, token = await stack.user("alice")
    client = aioredis.from_url(own_redis.url)
    try:
        # Authentication waits behind the pause past the deadline; the server must not write afterwards.
        await client.execute_command("CLIENT", "PAUSE", "600", "ALL")
        body = {"name": "late", "value": "v"}
        reply = await call(stack.http, "POST", SECRETS, token=token, body=body, headers={"Grpc-Timeout": "200m"})
        assert (reply.status, reply.json) == (504, {"message": errors.DEADLINE_EXCEEDED})
    finally:
        await client.aclose()
    reply = await eventually(stack, SECRETS, token, 200)
    assert (reply.status, reply.raw) == (200, b"[]")


async def test_rate_limited_is_429_with_retry_after(redis_url: str) -> None:
    async with (
        running_server(redis_url, rate_limit_per_second=0.5, rate_limit_burst=1) as server,
        gateway_in_front_of(server) as gw,
    ):
        _, token = await server.user("alice")
        assert (await call(gw.http, "GET", SECRETS, token=token)).status == 200
        reply = await call(gw.http, "GET", SECRETS, token=token)
        assert (reply.status, reply.json["message"]) == (429, "Rate limit exceeded.")
        assert reply.headers["Retry-After"] == "2"


async def test_stopping_the_gateway_finishes_requests_in_flight(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack) as gw:
        _, token = await gw.user("alice")
        client = aioredis.from_url(server_stack.redis_url)
        await client.execute_command("CLIENT", "PAUSE", "300", "WRITE")
        try:
            in_flight = asyncio.create_task(
                call(gw.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
            )
            await asyncio.sleep(0.1)
            await gw.gateway.runner.cleanup()  # what SIGTERM does in main(): stop listening, drain, close
            reply = await in_flight
        finally:
            await client.aclose()
        assert reply.status == 201
