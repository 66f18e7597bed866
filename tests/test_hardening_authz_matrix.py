"""Issue 5, item 6: the authorization matrix. Users A (alice) and B (bob); every endpoint, over REST and over
gRPC; A's token naming `me`, B's id and B's username; no token, A's expired token and A's revoked token
naming `me` and B's id. Each cell's status is asserted, and each cell is played twice, once while B has no
secret and once while B has the very secret asked for: the two answers must be the same, byte for byte
(only ids and timestamps of A's own new rows are masked), and B's stored state must not move.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.grpc_helpers import md, user_state
from tests.support.stack import ServerStack
from usersecrets.server.identity import IdentityStore
from usersecrets.v1 import usersecrets_pb2 as pb

SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
MISSING = 'Header "Coder-Session-Token" (or "Authorization: Bearer <token>") must be provided.'
FORBIDDEN = {"message": "Forbidden."}
ENDPOINTS = ("create", "list", "get", "update", "delete", "values")
VOLATILE = ("id", "created_at", "updated_at")


@dataclass
class People:
    gw: GatewayStack
    alice_id: str
    bob_id: str
    tokens: dict[str, str | None]  # credential row -> token

    @property
    def server(self) -> ServerStack:
        return self.gw.server


@pytest.fixture
async def people(server_stack: ServerStack) -> AsyncIterator[People]:
    async with gateway_in_front_of(server_stack) as gw:
        alice, token = await gw.user("alice")
        bob, bob_token = await gw.user("bob")
        past = IdentityStore(server_stack.redis, clock=lambda: time.time() - 3600)
        _, expired = await past.create_token(alice.id, 60)
        _, revoked = await server_stack.app.identity.create_token(alice.id, 3600)
        assert await server_stack.app.identity.revoke_token(revoked.split("-")[0])
        tokens = {"alice": token, "bob": bob_token, "none": None, "expired": expired, "revoked": revoked}
        yield People(gw, alice.id, bob.id, tokens)


# (row id, credential, target) -> per endpoint: REST status, gRPC code.
OWN = {"create": (201, "OK"), "list": (200, "OK"), "get": (200, "OK"), "update": (200, "OK"), "delete": (204, "OK")}
DENIED = dict.fromkeys(("create", "list", "get", "update", "delete"), (403, "PERMISSION_DENIED"))
SIGNED_OFF = dict.fromkeys(("create", "list", "get", "update", "delete"), (401, "UNAUTHENTICATED"))
ROWS = [
    ("me", "alice", "me", {**OWN, "values": (None, "PERMISSION_DENIED")}, None),
    ("b-uuid", "alice", "bob-id", {**DENIED, "values": (None, "PERMISSION_DENIED")}, None),
    ("b-username", "alice", "bob", {**DENIED, "values": (None, "PERMISSION_DENIED")}, None),
    ("no-token-me", "none", "me", {**SIGNED_OFF, "values": (None, "UNAUTHENTICATED")}, MISSING),
    ("no-token-b", "none", "bob-id", {**SIGNED_OFF, "values": (None, "UNAUTHENTICATED")}, MISSING),
    ("expired-me", "expired", "me", {**SIGNED_OFF, "values": (None, "UNAUTHENTICATED")}, "API key expired."),
    ("expired-b", "expired", "bob-id", {**SIGNED_OFF, "values": (None, "UNAUTHENTICATED")}, "API key expired."),
    ("revoked-me", "revoked", "me", {**SIGNED_OFF, "values": (None, "UNAUTHENTICATED")}, "API key is invalid."),
    ("revoked-b", "revoked", "bob-id", {**SIGNED_OFF, "values": (None, "UNAUTHENTICATED")}, "API key is invalid."),
]


def _mask(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_mask(o) for o in obj]
    if isinstance(obj, dict):
        return {k: ("*" if k in VOLATILE else _mask(v)) for k, v in obj.items()}
    return obj


async def rest(people: People, endpoint: str, user: str, token: str | None) -> tuple[int | None, Any]:
    base = f"/api/v2/users/{user}/secrets"
    method, path, body = {
        "create": ("POST", base, {"name": "fresh", "value": "new-value"}),
        "list": ("GET", base, None),
        "get": ("GET", f"{base}/s", None),
        "update": ("PATCH", f"{base}/s", {"value": "changed", "description": "d"}),
        "delete": ("DELETE", f"{base}/s", None),
    }[endpoint]
    reply = await call(people.gw.http, method, path, token=token, body=body)
    return reply.status, _mask(json.loads(reply.raw)) if reply.raw else b""


async def over_grpc(people: People, endpoint: str, user: str, token: str | None) -> tuple[str, Any]:
    metadata = md(token) if token is not None else ()
    requests: dict[str, tuple[str, Any]] = {
        "create": ("CreateUserSecret", pb.CreateUserSecretRequest(user=user, name="fresh", value="new-value")),
        "list": ("ListUserSecrets", pb.ListUserSecretsRequest(user=user)),
        "get": ("GetUserSecret", pb.GetUserSecretRequest(user=user, name="s")),
        "update": ("UpdateUserSecret", pb.UpdateUserSecretRequest(user=user, name="s", value="changed")),
        "delete": ("DeleteUserSecret", pb.DeleteUserSecretRequest(user=user, name="s")),
        "values": ("ListUserSecretValues", pb.ListUserSecretValuesRequest(user=user)),
    }
    method, request = requests[endpoint]
    async with people.server.stub() as stub:
        try:
            reply = await getattr(stub, method)(request, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            trailers = sorted((k, v) for k, v in (err.trailing_metadata() or ()) if k == "grpc-status-details-bin")
            return err.code().name, (err.details(), trailers)
    for secret in [reply] if isinstance(reply, pb.UserSecret) else getattr(reply, "secrets", []):
        for volatile in VOLATILE:
            secret.ClearField(volatile)
    return "OK", reply.SerializeToString(deterministic=True)


async def reset(people: People, bob_has_it: bool) -> None:
    """Alice has exactly secret "s"; bob has secret "s" (with env and file targets) or nothing."""
    store, server = people.server.app.store, people.server
    for user_id in (people.alice_id, people.bob_id):
        for secret in await store.list(user_id):
            await store.delete(user_id, secret.name)
    async with server.stub() as stub:
        await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="s", value="alice-value"), metadata=md(people.tokens["alice"])
        )
        if bob_has_it:
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="s", value="bob-value", env_name="BOB", file_path="~/b"),
                metadata=md(people.tokens["bob"]),
            )


Face = Callable[[People, str, str, str | None], Awaitable[tuple[Any, Any]]]


@pytest.mark.parametrize("face", ["rest", "grpc"])
@pytest.mark.parametrize(("row", "credential", "target", "expected", "detail"), ROWS, ids=[r[0] for r in ROWS])
async def test_authorization_matrix(
    people: People,
    face: str,
    row: str,
    credential: str,
    target: str,
    expected: dict[str, tuple[int | None, str]],
    detail: str | None,
) -> None:
    send: Face = rest if face == "rest" else over_grpc
    user = people.bob_id if target == "bob-id" else target
    token = people.tokens[credential]
    for endpoint in ENDPOINTS:
        want = expected[endpoint][0 if face == "rest" else 1]
        if want is None:
            continue  # no REST route reads values
        answers = []
        for bob_has_it in (False, True):
            await reset(people, bob_has_it)
            bob_before = await user_state(people.server.redis, people.bob_id)
            status, body = await send(people, endpoint, user, token)
            assert status == want, f"{face} {row} {endpoint} (bob has it: {bob_has_it}): {status} {body!r}, want {want}"
            assert await user_state(people.server.redis, people.bob_id) == bob_before, f"{face} {row} {endpoint}"
            answers.append((status, body))
        assert answers[0] == answers[1], f"{face} {row} {endpoint}: the answer depends on bob's secret"
        if face == "rest" and status == 403:
            assert body == FORBIDDEN
        if face == "rest" and status == 401:
            assert body == {"message": SIGNED_OUT, "detail": detail}
