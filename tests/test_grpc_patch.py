"""PATCH (UpdateUserSecret) rules: absent vs empty, no fields, the name never changes, timestamps, atomic failure."""

from __future__ import annotations

import itertools
import time
from typing import Any

import grpc
import pytest

from tests.support.grpc_helpers import fails, md, user_state
from tests.support.stack import ServerStack
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

ORIGINAL = {"description": "desc", "env_name": "MY_ENV", "file_path": "~/f"}
ORIGINAL_VALUE = "canary-0c4d-original"
NO_FIELDS = "At least one field must be provided."


def us(ts: Any) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


async def values_of(stub: pb_grpc.UserSecretsServiceStub, service_token: str, user: str) -> dict[str, str]:
    answer = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), metadata=md(service_token))
    return {v.secret.name: v.value for v in answer.values}


def shown(secret: pb.UserSecret) -> dict[str, str]:
    return {"description": secret.description, "env_name": secret.env_name, "file_path": secret.file_path}


@pytest.mark.parametrize(
    ("patch", "fields", "value"),
    [
        pytest.param({"value": "new"}, ORIGINAL, "new", id="value-only"),
        pytest.param({"value": ""}, ORIGINAL, "", id="value-empty"),
        pytest.param({"description": "d2"}, ORIGINAL | {"description": "d2"}, ORIGINAL_VALUE, id="description"),
        pytest.param({"description": ""}, ORIGINAL | {"description": ""}, ORIGINAL_VALUE, id="description-empty"),
        pytest.param({"env_name": "OTHER"}, ORIGINAL | {"env_name": "OTHER"}, ORIGINAL_VALUE, id="env_name"),
        pytest.param({"env_name": ""}, ORIGINAL | {"env_name": ""}, ORIGINAL_VALUE, id="env_name-empty"),
        pytest.param({"file_path": "/g"}, ORIGINAL | {"file_path": "/g"}, ORIGINAL_VALUE, id="file_path"),
        pytest.param({"file_path": ""}, ORIGINAL | {"file_path": ""}, ORIGINAL_VALUE, id="file_path-empty"),
        pytest.param(
            {"value": "", "description": "", "env_name": "", "file_path": ""},
            {"description": "", "env_name": "", "file_path": ""},
            "",
            id="all-empty",
        ),
        pytest.param(
            {"value": "v2", "description": "d2", "env_name": "E2", "file_path": "/p2"},
            {"description": "d2", "env_name": "E2", "file_path": "/p2"},
            "v2",
            id="all-set",
        ),
    ],
)
async def test_absent_fields_stay_and_empty_fields_clear(
    server_stack: ServerStack, patch: dict[str, str], fields: dict[str, str], value: str
) -> None:
    user, token = await server_stack.user("alice")
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    async with server_stack.stub() as stub:
        created = await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="s", value=ORIGINAL_VALUE, **ORIGINAL), metadata=md(token)
        )
        updated = await stub.UpdateUserSecret(
            pb.UpdateUserSecretRequest(user="me", name="s", **patch), metadata=md(token)
        )
        got = await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="s"), metadata=md(token))
        values = await values_of(stub, service, "alice")
    assert shown(updated) == fields
    assert (updated.id, updated.name, updated.created_at) == (created.id, "s", created.created_at)
    assert got == updated
    assert values == {"s": value}
    # The indexes follow the fields: only non-empty targets are claimed.
    env = await server_stack.redis.hgetall(f"us:{{{user.id}}}:env")
    files = await server_stack.redis.hgetall(f"us:{{{user.id}}}:files")
    assert env == ({fields["env_name"].encode(): b"s"} if fields["env_name"] else {})
    assert files == ({fields["file_path"].encode(): b"s"} if fields["file_path"] else {})
    usage = await server_stack.redis.hgetall(f"us:{{{user.id}}}:usage")
    length = len(value.encode())
    assert usage == {b"bytes": str(length).encode(), b"env_bytes": str(length if fields["env_name"] else 0).encode()}


@pytest.mark.parametrize("name", ["s", "missing"], ids=["existing-secret", "missing-secret"])
async def test_no_fields_is_rejected(server_stack: ServerStack, name: str) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="s", value="v"), metadata=md(token))
        before = await user_state(server_stack.redis, user.id)
        failure = await fails(
            stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user="me", name=name), metadata=md(token))
        )
    assert (failure.code, failure.message) == (grpc.StatusCode.INVALID_ARGUMENT, NO_FIELDS)
    assert (failure.reason, failure.detail, failure.violations) == ("NO_FIELDS", None, [])
    assert await user_state(server_stack.redis, user.id) == before


def test_update_request_cannot_carry_a_new_name() -> None:
    """The name is the path's: the request has no second name, and the four fields are proto3 optional."""
    fields = {f.name: f for f in pb.UpdateUserSecretRequest.DESCRIPTOR.fields}
    assert set(fields) == {"user", "name", "value", "description", "env_name", "file_path"}
    optional = {name for name, f in fields.items() if f.has_presence}
    assert optional == {"value", "description", "env_name", "file_path"}


async def test_name_and_id_never_change(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        created = await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="s", value="v"), metadata=md(token)
        )
        for patch in ({"value": "w"}, {"description": "s2"}, {"env_name": "S2"}, {"file_path": "/s2"}):
            updated = await stub.UpdateUserSecret(
                pb.UpdateUserSecretRequest(user="me", name="s", **patch), metadata=md(token)
            )
            assert (updated.id, updated.name) == (created.id, "s")
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert [(s.id, s.name) for s in listed.secrets] == [(created.id, "s")]
    assert await server_stack.redis.zrange(f"us:{{{user.id}}}:names", 0, -1) == [b"s"]


async def test_updated_at_moves_on_every_patch_and_created_at_does_not(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    started = time.time_ns() // 1000
    async with server_stack.stub() as stub:
        created = await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="s", value="v"), metadata=md(token)
        )
        assert created.created_at == created.updated_at
        assert started - 1_000_000 <= us(created.created_at) <= time.time_ns() // 1000 + 1_000_000
        seen = [us(created.updated_at)]
        # Quick PATCHes, some of which change nothing at all, each move updated_at forward.
        patches = [{"description": "x"}, {"description": "x"}, {"value": "v"}, {"value": "v"}, {"env_name": ""}]
        for patch in patches * 2:
            updated = await stub.UpdateUserSecret(
                pb.UpdateUserSecretRequest(user="me", name="s", **patch), metadata=md(token)
            )
            assert updated.created_at == created.created_at
            seen.append(us(updated.updated_at))
        got = await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="s"), metadata=md(token))
    assert all(a < b for a, b in itertools.pairwise(seen)), seen
    assert got.updated_at == updated.updated_at
    stored = await server_stack.redis.hmget(f"us:{{{user.id}}}:secret:s", "created_at", "updated_at")
    assert [int(x) for x in stored] == [us(created.created_at), seen[-1]]


# PATCHes that fail for each reason the contract has; none may change anything for anyone.
FAILING_PATCHES = [
    pytest.param("me", "s", {"value": "ok", "env_name": "PATH"}, grpc.StatusCode.INVALID_ARGUMENT, id="validation"),
    pytest.param("me", "s", {"value": "ok", "env_name": "TAKEN"}, grpc.StatusCode.ALREADY_EXISTS, id="env-taken"),
    pytest.param(
        "me", "s", {"description": "x", "file_path": "/taken"}, grpc.StatusCode.ALREADY_EXISTS, id="file-taken"
    ),
    pytest.param("me", "s", {"value": "v" * 24577}, grpc.StatusCode.INVALID_ARGUMENT, id="value-too-long"),
    pytest.param("me", "s", {"value": "v" * 24000}, grpc.StatusCode.FAILED_PRECONDITION, id="env-bytes-limit"),
    pytest.param("me", "nope", {"value": "ok"}, grpc.StatusCode.NOT_FOUND, id="not-found"),
    pytest.param("bob", "s", {"value": "ok"}, grpc.StatusCode.PERMISSION_DENIED, id="other-user"),
    pytest.param("nobody", "s", {"value": "ok"}, grpc.StatusCode.INVALID_ARGUMENT, id="unknown-user"),
]


@pytest.mark.parametrize(("user", "name", "patch", "code"), FAILING_PATCHES)
async def test_failed_patch_changes_nothing(
    server_stack: ServerStack, user: str, name: str, patch: dict[str, str], code: grpc.StatusCode
) -> None:
    alice, token = await server_stack.user("alice")
    bob, bob_token = await server_stack.user("bob")
    async with server_stack.stub() as stub:
        for owner in (token, bob_token):
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="t", value="x" * 1000, env_name="TAKEN", file_path="/taken"),
                metadata=md(owner),
            )
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="s", value="orig", env_name="S_ENV"), metadata=md(owner)
            )
        before = (await user_state(server_stack.redis, alice.id), await user_state(server_stack.redis, bob.id))
        failure = await fails(
            stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user=user, name=name, **patch), metadata=md(token))
        )
    assert failure.code == code, failure
    after = (await user_state(server_stack.redis, alice.id), await user_state(server_stack.redis, bob.id))
    assert after == before
