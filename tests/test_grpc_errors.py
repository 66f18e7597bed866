"""The error rows of CONTRACT.md section 2 that apply to gRPC: status code, message, google.rpc details, state."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tests.support.grpc_helpers import VALIDATION_FAILED, Failure, assert_absent, fails, md, user_state
from tests.support.stack import ServerStack
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

CANARY = "canary-e91b-value"
NOT_FOUND = "Resource not found or you do not have access to this resource"
BAD_USER = '"user" must be an existing uuid or username.'
DOMAIN = "usersecrets.v1"


def assert_failure(failure: Failure, code: grpc.StatusCode, message: str, reason: str, detail: str | None) -> None:
    assert (failure.code, failure.message) == (code, message), failure
    assert (failure.reason, failure.domain, failure.detail) == (reason, DOMAIN, detail), failure


def create(user: str = "me", **fields: Any) -> pb.CreateUserSecretRequest:
    return pb.CreateUserSecretRequest(**({"user": user, "name": "s", "value": CANARY} | fields))


# Each RPC that names a secret, called for a name that does not exist.
MISSING_SECRET_CALLS = [
    pytest.param("GetUserSecret", pb.GetUserSecretRequest(user="me", name="nope"), id="get"),
    pytest.param("UpdateUserSecret", pb.UpdateUserSecretRequest(user="me", name="nope", value="x"), id="update-value"),
    pytest.param(
        "UpdateUserSecret", pb.UpdateUserSecretRequest(user="me", name="nope", description="d"), id="update-metadata"
    ),
    pytest.param("DeleteUserSecret", pb.DeleteUserSecretRequest(user="me", name="nope"), id="delete"),
]


@pytest.mark.parametrize(("method", "request_"), MISSING_SECRET_CALLS)
async def test_missing_secret_is_not_found(server_stack: ServerStack, method: str, request_: Any) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(name="other"), metadata=md(token))
        before = await user_state(server_stack.redis, user.id)
        failure = await fails(getattr(stub, method)(request_, metadata=md(token)))
    assert_failure(failure, grpc.StatusCode.NOT_FOUND, NOT_FOUND, "NOT_FOUND", None)
    assert failure.violations == []
    assert await user_state(server_stack.redis, user.id) == before


async def test_delete_twice_is_not_found_the_second_time(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(env_name="E", file_path="/f"), metadata=md(token))
        await stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name="s"), metadata=md(token))
        failure = await fails(
            stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name="s"), metadata=md(token))
        )
    assert_failure(failure, grpc.StatusCode.NOT_FOUND, NOT_FOUND, "NOT_FOUND", None)
    # The last secret gone, no index or usage key is left behind.
    assert await user_state(server_stack.redis, user.id) == {}


DUPLICATE_CREATES = [
    pytest.param({"name": "s"}, {"name": "s"}, "name", id="name"),
    pytest.param({"name": "a", "env_name": "TOKEN"}, {"name": "b", "env_name": "TOKEN"}, "env_name", id="env_name"),
    pytest.param({"name": "a", "file_path": "~/f"}, {"name": "b", "file_path": "~/f"}, "file_path", id="file_path"),
    pytest.param(
        {"name": "s", "env_name": "T", "file_path": "/f"},
        {"name": "s", "env_name": "T", "file_path": "/f"},
        "name",
        id="all-three-reports-name",
    ),
]


@pytest.mark.parametrize(("first", "second", "field"), DUPLICATE_CREATES)
async def test_create_duplicate_is_already_exists(
    server_stack: ServerStack, first: dict[str, str], second: dict[str, str], field: str
) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(**first), metadata=md(token))
        before = await user_state(server_stack.redis, user.id)
        failure = await fails(stub.CreateUserSecret(create(**second, value=CANARY + "2"), metadata=md(token)))
    assert_failure(failure, grpc.StatusCode.ALREADY_EXISTS, VALIDATION_FAILED, "ALREADY_EXISTS", None)
    assert failure.violations == [(field, f"{field} already in use")]
    assert_absent(failure.raw, CANARY, token)
    assert await user_state(server_stack.redis, user.id) == before


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param({"env_name": "TAKEN"}, "env_name", id="env_name"),
        pytest.param({"file_path": "/taken"}, "file_path", id="file_path"),
        pytest.param({"value": "new", "env_name": "TAKEN"}, "env_name", id="env_name-with-value"),
    ],
)
async def test_update_to_taken_target_is_already_exists(
    server_stack: ServerStack, patch: dict[str, str], field: str
) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(name="a", env_name="TAKEN", file_path="/taken"), metadata=md(token))
        await stub.CreateUserSecret(create(name="b"), metadata=md(token))
        before = await user_state(server_stack.redis, user.id)
        request = pb.UpdateUserSecretRequest(user="me", name="b", **patch)
        failure = await fails(stub.UpdateUserSecret(request, metadata=md(token)))
    assert_failure(failure, grpc.StatusCode.ALREADY_EXISTS, VALIDATION_FAILED, "ALREADY_EXISTS", None)
    assert failure.violations == [(field, f"{field} already in use")]
    assert await user_state(server_stack.redis, user.id) == before


async def test_uniqueness_is_case_sensitive_per_user_and_freed_by_delete(server_stack: ServerStack) -> None:
    _, alice = await server_stack.user("alice")
    _, bob = await server_stack.user("bob")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(name="gh", env_name="GH", file_path="/A"), metadata=md(alice))
        await stub.CreateUserSecret(create(name="GH", env_name="gh", file_path="/a"), metadata=md(alice))
        # Another user may use the same name and targets.
        await stub.CreateUserSecret(create(name="gh", env_name="GH", file_path="/A"), metadata=md(bob))
        # Keeping one's own env_name and file_path is no conflict.
        await stub.UpdateUserSecret(
            pb.UpdateUserSecretRequest(user="me", name="gh", env_name="GH", file_path="/A"), metadata=md(alice)
        )
        await stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name="gh"), metadata=md(alice))
        again = await stub.CreateUserSecret(create(name="x", env_name="GH", file_path="/A"), metadata=md(alice))
        await stub.CreateUserSecret(create(name="gh"), metadata=md(alice))
        names = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(alice))
    assert (again.env_name, again.file_path) == ("GH", "/A")
    assert [s.name for s in names.secrets] == ["GH", "gh", "x"]


@pytest.mark.parametrize(
    "user",
    [
        pytest.param("", id="empty"),
        pytest.param("nobody", id="unknown-username"),
        pytest.param(str(uuid.uuid4()), id="unknown-uuid"),
        pytest.param("not a user!", id="not-a-username"),
        pytest.param("x" * 200, id="very-long"),
    ],
)
@pytest.mark.parametrize(
    "method", ["CreateUserSecret", "ListUserSecrets", "GetUserSecret", "UpdateUserSecret", "DeleteUserSecret"]
)
async def test_unknown_user_param_is_bad_user(server_stack: ServerStack, user: str, method: str) -> None:
    alice, token = await server_stack.user("alice")
    requests = {
        "CreateUserSecret": create(user=user),
        "ListUserSecrets": pb.ListUserSecretsRequest(user=user),
        "GetUserSecret": pb.GetUserSecretRequest(user=user, name="s"),
        "UpdateUserSecret": pb.UpdateUserSecretRequest(user=user, name="s", value="v"),
        "DeleteUserSecret": pb.DeleteUserSecretRequest(user=user, name="s"),
    }
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(), metadata=md(token))
        before = await user_state(server_stack.redis, alice.id)
        failure = await fails(getattr(stub, method)(requests[method], metadata=md(token)))
    assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, BAD_USER, "BAD_USER_PARAM", None)
    assert failure.violations == []
    assert await user_state(server_stack.redis, alice.id) == before


async def test_self_by_uuid_and_username_in_any_case(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("Alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create(name="s"), metadata=md(token))
        for who in ("me", alice.id, alice.id.upper(), "Alice", "alice", "ALICE"):
            got = await stub.GetUserSecret(pb.GetUserSecretRequest(user=who, name="s"), metadata=md(token))
            assert got.name == "s", who


async def fill(stub: pb_grpc.UserSecretsServiceStub, token: str, sizes: list[tuple[str, int, str]]) -> None:
    for name, size, env in sizes:
        await stub.CreateUserSecret(create(name=name, value="v" * size, env_name=env), metadata=md(token))


LIMIT_COUNT = ("User secrets limit reached.", "A user may have at most 50 secrets.")
LIMIT_BYTES = (
    "User secrets total value size limit reached.",
    "The values of a user's secrets may total at most 204800 bytes.",
)
LIMIT_ENV = (
    "User secrets environment value size limit reached.",
    "The values of a user's secrets that have an env_name may total at most 24576 bytes.",
)


async def assert_limit(server_stack: ServerStack, user_id: str, call: Any, limit: tuple[str, str]) -> None:
    before = await user_state(server_stack.redis, user_id)
    failure = await fails(call)
    assert_failure(failure, grpc.StatusCode.FAILED_PRECONDITION, limit[0], "LIMIT_REACHED", limit[1])
    assert failure.violations == []
    assert_absent(failure.raw, CANARY)
    assert await user_state(server_stack.redis, user_id) == before


async def test_count_limit(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await fill(stub, token, [(f"s{i:02d}", 1, "") for i in range(50)])
        await assert_limit(
            server_stack, user.id, stub.CreateUserSecret(create(name="s50"), metadata=md(token)), LIMIT_COUNT
        )
        await stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name="s00"), metadata=md(token))
        await stub.CreateUserSecret(create(name="s50"), metadata=md(token))
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert len(listed.secrets) == 50


async def test_total_bytes_limit(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        # 8 * 24576 + 8192 == 204800: exactly at the limit is allowed.
        await fill(stub, token, [(f"big{i}", 24576, "") for i in range(8)] + [("rest", 8192, "")])
        await assert_limit(
            server_stack, user.id, stub.CreateUserSecret(create(name="one", value="x"), metadata=md(token)), LIMIT_BYTES
        )
        grow = pb.UpdateUserSecretRequest(user="me", name="rest", value="w" * 8193)
        await assert_limit(server_stack, user.id, stub.UpdateUserSecret(grow, metadata=md(token)), LIMIT_BYTES)
        # The replaced value is not counted twice: rewriting a value of the same size fits.
        same = pb.UpdateUserSecretRequest(user="me", name="big0", value="é" * 12288)
        await stub.UpdateUserSecret(same, metadata=md(token))
        shrink = pb.UpdateUserSecretRequest(user="me", name="rest", value="")
        await stub.UpdateUserSecret(shrink, metadata=md(token))
        await stub.CreateUserSecret(create(name="one", value="x" * 8192), metadata=md(token))
    assert await server_stack.redis.hget(f"us:{{{user.id}}}:usage", "bytes") == b"204800"


async def test_env_bytes_limit(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await fill(stub, token, [("a", 24000, "A_ENV"), ("b", 576, "B_ENV")])
        await assert_limit(
            server_stack,
            user.id,
            stub.CreateUserSecret(create(name="c", value="x", env_name="C_ENV"), metadata=md(token)),
            LIMIT_ENV,
        )
        # Without an env_name the value does not count toward that limit.
        await stub.CreateUserSecret(create(name="c", value="x"), metadata=md(token))
        give_env = pb.UpdateUserSecretRequest(user="me", name="c", env_name="C_ENV")
        await assert_limit(server_stack, user.id, stub.UpdateUserSecret(give_env, metadata=md(token)), LIMIT_ENV)
        grow = pb.UpdateUserSecretRequest(user="me", name="b", value="y" * 577)
        await assert_limit(server_stack, user.id, stub.UpdateUserSecret(grow, metadata=md(token)), LIMIT_ENV)
        # Same size again, and a rename of the env_name: the row is measured once.
        await stub.UpdateUserSecret(
            pb.UpdateUserSecretRequest(user="me", name="b", value="z" * 576), metadata=md(token)
        )
        await stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user="me", name="b", env_name="B2"), metadata=md(token))
        # Dropping the env_name frees its bytes for another secret.
        await stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user="me", name="b", env_name=""), metadata=md(token))
        await stub.UpdateUserSecret(give_env, metadata=md(token))
    usage = await server_stack.redis.hgetall(f"us:{{{user.id}}}:usage")
    assert usage == {b"bytes": b"24577", b"env_bytes": b"24001"}
