"""CONTRACT.md sections 2 and 3 through REST: who may call, and what a refused call leaves behind."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.gateway_stack import GatewayStack, call
from tests.test_gateway_rest import (
    SECRETS,
    SIGNED_OUT,
    assert_error,
    gateway,
    listed,
    signed_in,
)
from usersecrets.server import keys

__all__ = ["gateway"]  # the fixture, shared with tests/test_gateway_rest.py

# ---- authentication and authorization --------------------------------------------------------------------------


async def test_unauthenticated(gateway: GatewayStack) -> None:
    await signed_in(gateway)
    _, expired = await gateway.server.user("old", lifetime=0.001)
    await asyncio.sleep(0.01)
    cases = {
        "no token": {},
        "malformed": {"Coder-Session-Token": "not-a-token"},
        "unknown": {"Coder-Session-Token": "abcdefghij-" + "x" * 22},
        "expired": {"Coder-Session-Token": expired},
        "non-ascii": {"Coder-Session-Token": "t\u00e9st"},
        "bearer without token": {"Authorization": "Bearer "},
    }
    for label, headers in cases.items():
        reply = await call(gateway.http, "GET", SECRETS, headers=headers)
        assert (reply.status, reply.json["message"]) == (401, SIGNED_OUT), label
        assert reply.json.get("detail"), label


async def test_bearer_token_is_accepted(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    reply = await call(gateway.http, "GET", SECRETS, headers={"Authorization": f"Bearer {token}"})
    assert (reply.status, reply.raw) == (200, b"[]")


async def test_another_users_secrets_are_forbidden_whether_or_not_they_exist(gateway: GatewayStack) -> None:
    owner, owner_token = await gateway.user("owner")
    intruder = await signed_in(gateway, "intruder")
    assert (
        await call(gateway.http, "POST", SECRETS, token=owner_token, body={"name": "k", "value": "v"})
    ).status == 201
    for who in ("owner", owner.id):
        for method, path, body in [
            ("GET", "secrets", None),
            ("POST", "secrets", {"name": "x", "value": "v"}),
            ("GET", "secrets/k", None),
            ("GET", "secrets/missing", None),
            ("PATCH", "secrets/k", {"value": "x"}),
            ("DELETE", "secrets/k", None),
            ("DELETE", "secrets/missing", None),
        ]:
            reply = await call(gateway.http, method, f"/api/v2/users/{who}/{path}", token=intruder, body=body)
            assert_error(reply, 403, "Forbidden.")
    assert [s["name"] for s in await listed(gateway, owner_token)] == ["k"]


@pytest.mark.parametrize("who", ["nobody", "00000000-0000-4000-8000-000000000000"], ids=["username", "uuid"])
async def test_unknown_user_param(gateway: GatewayStack, who: str) -> None:
    token = await signed_in(gateway)
    reply = await call(gateway.http, "GET", f"/api/v2/users/{who}/secrets", token=token)
    assert_error(reply, 400, '"user" must be an existing uuid or username.')


async def test_stored_state_of_a_rejected_create_is_untouched(gateway: GatewayStack) -> None:
    user, token = await gateway.user("carol")
    assert (await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})).status == 201
    before = {k async for k in gateway.server.redis.scan_iter(match=f"{keys.PREFIX}:*")}
    for body in ({"name": "k", "value": "v"}, {"name": "a/b", "value": "v"}, [1]):
        assert (await call(gateway.http, "POST", SECRETS, token=token, body=body)).status in (400, 409)
    after = {k async for k in gateway.server.redis.scan_iter(match=f"{keys.PREFIX}:*")}
    assert after == before and user.id
