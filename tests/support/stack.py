"""A real gRPC server on a free port in the test's event loop, over a real Redis, with helpers to make users."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from redis.asyncio import Redis, RedisCluster

from usersecrets.server.app import ServerApp, create_server
from usersecrets.server.config import ServerConfig
from usersecrets.server.crypto import KeyRing, generate_key_spec
from usersecrets.server.model import User
from usersecrets.server.redis_client import connect
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc


@dataclasses.dataclass
class ServerStack:
    redis_url: str
    config: ServerConfig
    key_spec: str
    app: ServerApp
    redis: Redis | RedisCluster  # a direct client for assertions on stored state

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    async def user(self, username: str, roles: tuple[str, ...] = (), lifetime: float = 3600.0) -> tuple[User, str]:
        """A new user and a real session token for them."""
        user = await self.app.identity.create_user(username, roles)
        _, token = await self.app.identity.create_token(user.id, lifetime)
        return user, token

    @asynccontextmanager
    async def stub(self) -> AsyncIterator[pb_grpc.UserSecretsServiceStub]:
        async with grpc.aio.insecure_channel(self.grpc_target) as channel:
            yield pb_grpc.UserSecretsServiceStub(channel)


@asynccontextmanager
async def running_server(redis_url: str, key_spec: str | None = None, **overrides: Any) -> AsyncIterator[ServerStack]:
    key_spec = key_spec or generate_key_spec()
    config = ServerConfig(
        redis_url=redis_url,
        encryption_keys=key_spec,
        grpc_listen="127.0.0.1:0",
        health_interval_seconds=0.2,
        redis_timeout_seconds=2.0,
        # Tests that revoke a token expect it refused at once; the cache has its own tests.
        **({"token_cache_seconds": 0.0} | overrides),
    )
    app = await create_server(config, key_ring=KeyRing.parse(key_spec))
    await app.start()
    direct = connect(redis_url)  # standalone, cluster or sentinel, as the server sees it
    try:
        yield ServerStack(redis_url, config, key_spec, app, direct)
    finally:
        # Bounded, so a teardown stuck on a dead Redis (a failover test's) cannot hang the whole suite.
        await asyncio.wait_for(direct.aclose(), timeout=10)
        await asyncio.wait_for(app.stop(0.5), timeout=20)
