"""Identity and authorization over gRPC: who may call, and whose secrets they may touch (CONTRACT.md section 3)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from tests.support.grpc_helpers import assert_absent, fails, md, user_state
from tests.support.stack import ServerStack
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb

SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
MISSING = 'Header "Coder-Session-Token" (or "Authorization: Bearer <token>") must be provided.'
BAD_FORMAT = "Invalid API key format."
INVALID_KEY = "API key is invalid."
EXPIRED = "API key expired."
FORBIDDEN = "Forbidden."
CANARY = "canary-51aa-value"


def requests_for(user: str) -> dict[str, Any]:
    return {
        "CreateUserSecret": pb.CreateUserSecretRequest(user=user, name="s", value=CANARY + "-new"),
        "ListUserSecrets": pb.ListUserSecretsRequest(user=user),
        "GetUserSecret": pb.GetUserSecretRequest(user=user, name="s"),
        "UpdateUserSecret": pb.UpdateUserSecretRequest(user=user, name="s", value=CANARY + "-new"),
        "DeleteUserSecret": pb.DeleteUserSecretRequest(user=user, name="s"),
        "ListUserSecretValues": pb.ListUserSecretValuesRequest(user=user),
    }


METHODS = list(requests_for("me"))

BAD_CREDENTIALS = [
    pytest.param((), MISSING, id="no-metadata"),
    pytest.param((("coder-session-token", ""),), MISSING, id="empty-token"),
    pytest.param((("authorization", "Basic dXNlcjpwYXNz"),), MISSING, id="basic-auth"),
    pytest.param((("authorization", "Bearer "),), MISSING, id="bearer-without-token"),
    pytest.param((("coder-session-token", "garbage"),), BAD_FORMAT, id="malformed"),
    pytest.param((("coder-session-token", "abcdefghij-short"),), BAD_FORMAT, id="short-secret"),
    pytest.param((("coder-session-token", "abcdefghij-" + "x" * 22 + " "),), BAD_FORMAT, id="trailing-space"),
    pytest.param((("authorization", "Bearer garbage"),), BAD_FORMAT, id="bearer-malformed"),
    pytest.param((("coder-session-token", "abcdefghij-" + "x" * 22),), INVALID_KEY, id="unknown"),
    pytest.param((("authorization", "Bearer abcdefghij-" + "x" * 22),), INVALID_KEY, id="bearer-unknown"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("metadata", "detail"), BAD_CREDENTIALS)
async def test_bad_credentials_are_unauthenticated(
    server_stack: ServerStack, method: str, metadata: tuple[tuple[str, str], ...], detail: str
) -> None:
    alice, _ = await server_stack.user("alice", roles=(SERVICE_ROLE,))
    async with server_stack.stub() as stub:
        failure = await fails(getattr(stub, method)(requests_for("me")[method], metadata=metadata))
    assert (failure.code, failure.message) == (grpc.StatusCode.UNAUTHENTICATED, SIGNED_OUT)
    assert (failure.reason, failure.detail, failure.violations) == ("UNAUTHENTICATED", detail, [])
    for _, value in metadata:
        if len(value) > 8:  # short values ("Bearer ") are words of the answer itself
            assert_absent(failure.raw, value.removeprefix("Bearer "))
    assert await user_state(server_stack.redis, alice.id) == {}


async def test_wrong_secret_for_a_real_token_id(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    token_id, secret = token.split("-")
    forged = f"{token_id}-{secret[::-1] if secret[::-1] != secret else 'y' * 22}"
    async with server_stack.stub() as stub:
        failure = await fails(stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(forged)))
    assert (failure.code, failure.message, failure.detail) == (grpc.StatusCode.UNAUTHENTICATED, SIGNED_OUT, INVALID_KEY)
    assert_absent(failure.raw, token, secret)


async def test_expired_token(server_stack: ServerStack) -> None:
    alice, _ = await server_stack.user("alice")
    # Minted an hour ago with a minute to live: expired by its stored expires_at, still present in Redis.
    past = IdentityStore(server_stack.redis, clock=lambda: time.time() - 3600)
    _, token = await past.create_token(alice.id, 60)
    async with server_stack.stub() as stub:
        failure = await fails(stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token)))
    assert (failure.code, failure.message) == (grpc.StatusCode.UNAUTHENTICATED, SIGNED_OUT)
    assert (failure.reason, failure.detail) == ("UNAUTHENTICATED", EXPIRED)
    assert_absent(failure.raw, token)


async def test_token_with_tiny_lifetime_stops_working(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice", lifetime=0.3)
    async with server_stack.stub() as stub:
        await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        await asyncio.sleep(0.4)
        failure = await fails(stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token)))
    assert (failure.code, failure.message) == (grpc.StatusCode.UNAUTHENTICATED, SIGNED_OUT)
    # Redis drops the key at expiry too, so the answer may be either of the two token details.
    assert failure.detail in (EXPIRED, INVALID_KEY)


async def test_revoked_token(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    _, other = await server_stack.user("bob")
    async with server_stack.stub() as stub:
        await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        assert await server_stack.app.identity.revoke_token(token.split("-")[0])
        failure = await fails(stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token)))
        # Revoking one token leaves the others alone.
        await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(other))
    assert (failure.code, failure.message, failure.detail) == (grpc.StatusCode.UNAUTHENTICATED, SIGNED_OUT, INVALID_KEY)


async def test_username_that_parses_as_uuid_is_still_a_username(server_stack: ServerStack) -> None:
    """32 hex digits is a legal username (identity.USERNAME_RE, at most 32 characters) and Python's uuid.UUID
    also parses it; when no user has that UUID, `{user}` must still find the user by that username."""
    name = "deadbeef" * 4
    _, token = await server_stack.user(name)
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="s", value="v"), metadata=md(token))
        got = await stub.GetUserSecret(pb.GetUserSecretRequest(user=name, name="s"), metadata=md(token))
    assert got.name == "s"


@pytest.mark.parametrize("header", ["Bearer {}", "bearer {}", "BEARER   {}  "], ids=["Bearer", "lower", "spaces"])
async def test_authorization_bearer_is_accepted(server_stack: ServerStack, header: str) -> None:
    _, token = await server_stack.user("alice")
    metadata = (("authorization", header.format(token)),)
    async with server_stack.stub() as stub:
        created = await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="s", value="v"), metadata=metadata
        )
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=metadata)
    assert list(listed.secrets) == [created]


# Calls alice makes on bob's secrets; each must be refused the same way, whatever bob has.
CROSS_USER_CALLS = [
    pytest.param("CreateUserSecret", pb.CreateUserSecretRequest(name="s", value=CANARY + "-a"), id="create"),
    pytest.param("CreateUserSecret", pb.CreateUserSecretRequest(name="", value="", env_name="1"), id="create-invalid"),
    pytest.param("ListUserSecrets", pb.ListUserSecretsRequest(), id="list"),
    pytest.param("GetUserSecret", pb.GetUserSecretRequest(name="s"), id="get"),
    pytest.param("UpdateUserSecret", pb.UpdateUserSecretRequest(name="s", value=CANARY + "-a"), id="update"),
    pytest.param("UpdateUserSecret", pb.UpdateUserSecretRequest(name="s", env_name="PATH"), id="update-invalid"),
    pytest.param("UpdateUserSecret", pb.UpdateUserSecretRequest(name="s"), id="update-no-fields"),
    pytest.param("DeleteUserSecret", pb.DeleteUserSecretRequest(name="s"), id="delete"),
]


@pytest.mark.parametrize("address", ["uuid", "UUID", "username", "USERNAME"])
@pytest.mark.parametrize(("method", "template"), CROSS_USER_CALLS)
async def test_other_users_secrets_are_forbidden(
    server_stack: ServerStack, method: str, template: Any, address: str
) -> None:
    _, alice = await server_stack.user("alice")
    bob, bob_token = await server_stack.user("bob")
    target = {"uuid": bob.id, "UUID": bob.id.upper(), "username": "bob", "USERNAME": "BOB"}[address]
    request = type(template)()
    request.CopyFrom(template)
    request.user = target
    answers = []
    async with server_stack.stub() as stub:
        for bob_has_it in (False, True):
            if bob_has_it:
                await stub.CreateUserSecret(
                    pb.CreateUserSecretRequest(user="me", name="s", value=CANARY, env_name="E"), metadata=md(bob_token)
                )
            before = await user_state(server_stack.redis, bob.id)
            failure = await fails(getattr(stub, method)(request, metadata=md(alice)))
            assert (failure.code, failure.message) == (grpc.StatusCode.PERMISSION_DENIED, FORBIDDEN)
            assert (failure.reason, failure.detail, failure.violations) == ("FORBIDDEN", None, [])
            assert_absent(failure.raw, CANARY, alice, bob_token)
            assert await user_state(server_stack.redis, bob.id) == before
            answers.append(failure.raw)
    # Whether bob's secret exists is not observable: the two answers are byte for byte the same.
    assert answers[0] == answers[1]


@pytest.mark.parametrize("roles", [(), ("admin",), ("owner", "member")], ids=["none", "admin", "other-roles"])
@pytest.mark.parametrize("target", ["me", "alice", "bob-uuid"])
async def test_values_need_the_service_role(server_stack: ServerStack, roles: tuple[str, ...], target: str) -> None:
    _, token = await server_stack.user("alice", roles=roles)
    bob, bob_token = await server_stack.user("bob")
    user = bob.id if target == "bob-uuid" else target
    async with server_stack.stub() as stub:
        for owner in (token, bob_token):
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="s", value=CANARY), metadata=md(owner)
            )
        failure = await fails(stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), metadata=md(token)))
    assert (failure.code, failure.message, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        FORBIDDEN,
        "FORBIDDEN",
    )
    assert_absent(failure.raw, CANARY)


async def test_service_role_reads_values_of_any_user_but_not_through_public_rpcs(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("alice")
    _, service = await server_stack.user("injector", roles=("admin", SERVICE_ROLE))
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="s", value=CANARY), metadata=md(token))
        for who in (alice.id, alice.id.upper(), "alice", "ALICE"):
            answer = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=who), metadata=md(service))
            assert [(v.secret.name, v.value) for v in answer.values] == [("s", CANARY)], who
        own = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="me"), metadata=md(service))
        assert list(own.values) == []
        # The service role grants no access to another user's secrets over the public RPCs.
        for method, request in requests_for("alice").items():
            if method == "ListUserSecretValues":
                continue
            failure = await fails(getattr(stub, method)(request, metadata=md(service)))
            assert (failure.code, failure.message) == (grpc.StatusCode.PERMISSION_DENIED, FORBIDDEN), method


@pytest.mark.parametrize("user", ["", "nobody", "00000000-0000-0000-0000-000000000000"])
async def test_values_for_unknown_user_is_bad_user(server_stack: ServerStack, user: str) -> None:
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    async with server_stack.stub() as stub:
        failure = await fails(
            stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), metadata=md(service))
        )
    assert (failure.code, failure.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        '"user" must be an existing uuid or username.',
    )
    assert failure.reason == "BAD_USER_PARAM"


async def test_role_granted_later_applies_to_existing_token(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("injector")
    request = pb.ListUserSecretValuesRequest(user="me")
    async with server_stack.stub() as stub:
        failure = await fails(stub.ListUserSecretValues(request, metadata=md(token)))
        assert failure.code == grpc.StatusCode.PERMISSION_DENIED
        await server_stack.app.identity.grant_role(user.id, SERVICE_ROLE)
        answer = await stub.ListUserSecretValues(request, metadata=md(token))
    assert list(answer.values) == []
