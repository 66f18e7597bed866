"""The verified-token cache: fewer Redis round trips, yet revocation and expiry still bite within a bound."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis.asyncio as aioredis

from tests.support.grpc_helpers import md
from tests.support.stack import running_server
from usersecrets.server.errors import Unauthenticated
from usersecrets.server.identity import IdentityStore
from usersecrets.server.tokencache import CachedAuthenticator
from usersecrets.v1 import usersecrets_pb2 as pb


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _token_lookups(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


@pytest.fixture
async def client(redis_url: str):
    c = aioredis.from_url(redis_url)
    yield c
    await c.aclose()


async def test_a_hit_asks_redis_nothing_and_revocation_bites_after_ttl(client: aioredis.Redis) -> None:
    identity = IdentityStore(client)
    user = await identity.create_user("alice")
    token_id, token = await identity.create_token(user.id, 3600)
    clock = Clock()
    cache = CachedAuthenticator(identity, ttl=2.0, clock=clock)
    first = await cache.authenticate(token)
    before = await _token_lookups(client)
    assert await cache.authenticate(token) == first
    assert await _token_lookups(client) == before, "a cached token must not be looked up again"
    assert await identity.revoke_token(token_id)
    clock.now += 1.9
    assert (await cache.authenticate(token)).user_id == user.id  # within the documented bound
    clock.now += 0.2
    with pytest.raises(Unauthenticated) as err:
        await cache.authenticate(token)
    assert err.value.detail == "API key is invalid."


async def test_an_entry_never_outlives_the_token(client: aioredis.Redis) -> None:
    identity = IdentityStore(client)
    user = await identity.create_user("alice")
    _, token = await identity.create_token(user.id, 0.5)
    clock = Clock()
    cache = CachedAuthenticator(identity, ttl=60.0, clock=clock)
    await cache.authenticate(token)
    clock.now += 0.6  # past the token's own expiry, far inside the ttl
    await asyncio.sleep(0.6)
    with pytest.raises(Unauthenticated):
        await cache.authenticate(token)


async def test_failures_are_not_cached_and_memory_is_bounded(client: aioredis.Redis) -> None:
    identity = IdentityStore(client)
    user = await identity.create_user("alice")
    cache = CachedAuthenticator(identity, ttl=60.0, max_entries=3, clock=Clock())
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await cache.authenticate("abcdefghij-0123456789012345678901")
    assert len(cache) == 0
    tokens = [(await identity.create_token(user.id, 60))[1] for _ in range(5)]
    for token in tokens:
        await cache.authenticate(token)
    assert len(cache) == 3


async def test_server_refuses_a_revoked_token_within_the_cache_bound(redis_url: str) -> None:
    async with running_server(redis_url, token_cache_seconds=0.3) as stack:
        _, token = await stack.user("alice")
        async with stack.stub() as stub:
            request = pb.ListUserSecretsRequest(user="me")
            assert list((await stub.ListUserSecrets(request, metadata=md(token))).secrets) == []
            token_id = token.split("-", 1)[0]
            assert await stack.app.identity.revoke_token(token_id)
            await asyncio.sleep(0.35)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListUserSecrets(request, metadata=md(token))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
