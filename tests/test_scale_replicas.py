"""Two servers and two gateways on one Redis give the same answers at once (issue 7, replicas).

Each gateway talks to its own server; both servers share the Redis and the key ring, as replicas in a
Deployment do. Nothing a process keeps may let one replica answer from state another has changed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.stack import running_server
from usersecrets.server.consistency import check_user
from usersecrets.server.crypto import generate_key_spec

SECRETS = "/api/v2/users/me/secrets"
NOT_FOUND = "Resource not found or you do not have access to this resource"


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[GatewayStack, GatewayStack]]:
    key_spec = generate_key_spec()
    async with (
        running_server(redis_url, key_spec=key_spec) as one,
        running_server(redis_url, key_spec=key_spec) as two,
        gateway_in_front_of(one) as first,
        gateway_in_front_of(two) as second,
    ):
        assert first.server.grpc_target != second.server.grpc_target
        yield first, second


async def test_each_change_through_one_replica_is_seen_by_the_other_at_once(
    replicas: tuple[GatewayStack, GatewayStack],
) -> None:
    first, second = replicas
    _, token = await first.user("alice")
    body = {"name": "k", "value": "v", "env_name": "K", "file_path": "~/k"}
    created = await call(first.http, "POST", SECRETS, token=token, body=body)
    assert created.status == 201, created
    got = await call(second.http, "GET", f"{SECRETS}/k", token=token)
    assert (got.status, got.json) == (200, created.json)

    patched = await call(second.http, "PATCH", f"{SECRETS}/k", token=token, body={"description": "d"})
    assert (patched.status, patched.json["description"]) == (200, "d")
    listed = await call(first.http, "GET", SECRETS, token=token)
    assert (listed.status, listed.json) == (200, [patched.json])

    assert (await call(first.http, "DELETE", f"{SECRETS}/k", token=token)).status == 204
    gone = await call(second.http, "GET", f"{SECRETS}/k", token=token)
    assert (gone.status, gone.json) == (404, {"message": NOT_FOUND})
    # The name and its targets are free again on the other replica too.
    again = await call(second.http, "POST", SECRETS, token=token, body=body)
    assert again.status == 201, again


@pytest.mark.parametrize(
    ("field", "body_of"),
    [
        ("name", lambda i: {"name": "same", "value": "v"}),
        ("env_name", lambda i: {"name": f"s{i}", "value": "v", "env_name": "SAME"}),
        ("file_path", lambda i: {"name": f"s{i}", "value": "v", "file_path": "~/same"}),
    ],
    ids=["name", "env_name", "file_path"],
)
async def test_concurrent_creates_across_replicas_give_one_success(
    replicas: tuple[GatewayStack, GatewayStack], field: str, body_of
) -> None:  # type: ignore[no-untyped-def]
    first, second = replicas
    user, token = await first.user("racer")
    calls = [call(gw.http, "POST", SECRETS, token=token, body=body_of(i)) for i, gw in enumerate([first, second] * 15)]
    replies = await asyncio.gather(*calls)
    assert Counter(r.status for r in replies) == Counter({201: 1, 409: 29})
    conflict = {"message": "Validation failed.", "validations": [{"field": field, "detail": f"{field} already in use"}]}
    assert all(r.json == conflict for r in replies if r.status == 409)
    for gw in replicas:
        listed = await call(gw.http, "GET", SECRETS, token=token)
        assert [s["id"] for s in listed.json] == [r.json["id"] for r in replies if r.status == 201]
    assert await check_user(first.server.redis, user.id) == []


async def test_the_count_limit_holds_across_replicas(replicas: tuple[GatewayStack, GatewayStack]) -> None:
    first, second = replicas
    user, token = await first.user("racer")
    calls = [
        call(gw.http, "POST", SECRETS, token=token, body={"name": f"n{i:02d}", "value": "v"})
        for i, gw in enumerate([first, second] * 40)
    ]
    replies = await asyncio.gather(*calls)
    assert Counter(r.status for r in replies) == Counter({201: 50, 400: 30})
    limit = {"message": "User secrets limit reached.", "detail": "A user may have at most 50 secrets."}
    assert all(r.json == limit for r in replies if r.status == 400)
    for gw in replicas:
        assert len((await call(gw.http, "GET", SECRETS, token=token)).json) == 50
    assert await check_user(first.server.redis, user.id) == []


async def test_a_user_created_through_one_server_signs_in_on_the_other(
    replicas: tuple[GatewayStack, GatewayStack],
) -> None:
    first, second = replicas
    _, token = await first.user("newcomer")  # made by the first server's identity store
    reply = await call(second.http, "GET", "/api/v2/users/newcomer/secrets", token=token)
    assert (reply.status, reply.raw) == (200, b"[]")
