"""Relay/Batch on the server: each relayed call behaves, to the status byte, like the same call made on its own."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import code_pb2

from tests.support.grpc_helpers import VALIDATION_FAILED, md, user_state
from tests.support.relay_calls import (
    AUTHN,
    CANARY,
    FORMAT,
    INVALID,
    MISSING,
    NOT_FOUND,
    SIGNED_OUT,
    TOO_MANY,
    UNKNOWN_METHOD,
    UNKNOWN_TOKEN,
    UNPARSABLE,
    C,
    Described,
    calls_total,
    create,
    described,
    direct_status,
    get,
    item,
    listing,
    parsed,
    plain,
    relay_batch,
)
from tests.support.stack import ServerStack
from usersecrets.server import keys
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb


async def test_two_users_in_one_batch_each_act_as_themselves_in_order(server_stack: ServerStack) -> None:
    alice, a_token = await server_stack.user("alice")
    bob, b_token = await server_stack.user("bob")
    async with relay_batch(server_stack) as batch, server_stack.stub() as stub:
        created = await batch(
            [
                item("CreateUserSecret", create("shared", env_name="ALICE_ENV"), a_token),
                item("CreateUserSecret", create("shared", env_name="BOB_ENV"), b_token),
                item("CreateUserSecret", create("bobs-own"), b_token),
            ]
        )
        a_shared, b_shared, b_own = (parsed(r, pb.UserSecret) for r in created)
        assert [(s.name, s.env_name) for s in (a_shared, b_shared, b_own)] == [
            ("shared", "ALICE_ENV"),
            ("shared", "BOB_ENV"),
            ("bobs-own", ""),
        ]
        assert len({a_shared.id, b_shared.id, b_own.id}) == 3
        results = await batch(
            [
                item("GetUserSecret", get("shared"), a_token),
                item("GetUserSecret", get("shared"), b_token),
                item("GetUserSecret", get("shared", user=alice.id), b_token),
                item("ListUserSecrets", listing(), a_token),
                item("ListUserSecrets", listing(), b_token),
                item("GetUserSecret", get("bobs-own"), a_token),
            ]
        )
        forbidden = await direct_status(
            stub, "GetUserSecret", get("shared", user=alice.id), {"coder-session-token": b_token}
        )
        missing = await direct_status(stub, "GetUserSecret", get("bobs-own"), {"coder-session-token": a_token})
        direct_a = await stub.GetUserSecret(get("shared"), metadata=md(a_token))
    assert parsed(results[0], pb.UserSecret) == a_shared == direct_a
    assert parsed(results[1], pb.UserSecret) == b_shared
    assert results[2].status == forbidden
    assert described(results[2].status) == Described(C.PERMISSION_DENIED, "Forbidden.", "FORBIDDEN")
    assert results[2].response == b""
    assert parsed(results[3], pb.ListUserSecretsResponse) == pb.ListUserSecretsResponse(secrets=[a_shared])
    assert parsed(results[4], pb.ListUserSecretsResponse) == pb.ListUserSecretsResponse(secrets=[b_own, b_shared])
    assert results[5].status == missing
    assert described(results[5].status) == Described(C.NOT_FOUND, NOT_FOUND, "NOT_FOUND")
    assert await server_stack.redis.zrange(keys.names(alice.id), 0, -1) == [b"shared"]
    assert await server_stack.redis.zrange(keys.names(bob.id), 0, -1) == [b"bobs-own", b"shared"]
    assert await server_stack.redis.hgetall(keys.env_index(alice.id)) == {b"ALICE_ENV": b"shared"}
    assert await server_stack.redis.hgetall(keys.env_index(bob.id)) == {b"BOB_ENV": b"shared"}


ALICE_ID = "{alice}"  # stands for alice's id in a request, filled in once she exists
# (case, method, request, who calls, what the caller must learn)
ERROR_CASES: list[tuple[str, str, Any, str, Described]] = [
    (
        "validation",
        "CreateUserSecret",
        create("bad/", CANARY + "\x00", env_name="PATH", file_path="rel"),
        "alice",
        Described(
            C.INVALID_ARGUMENT,
            VALIDATION_FAILED,
            "VALIDATION_FAILED",
            violations=(
                ("env_name", "env_name PATH is reserved"),
                ("file_path", "file_path must start with ~/ or /"),
                ("name", "name must not contain '/', '?' or '#'"),
                ("value", "value must not contain null bytes"),
            ),
        ),
    ),
    ("not-found", "GetUserSecret", get("nope"), "alice", Described(C.NOT_FOUND, NOT_FOUND, "NOT_FOUND")),
    ("no-token", "ListUserSecrets", listing(), "nobody", Described(C.UNAUTHENTICATED, SIGNED_OUT, AUTHN, MISSING)),
    (
        "malformed-token",
        "ListUserSecrets",
        listing(),
        "garbage",
        Described(C.UNAUTHENTICATED, SIGNED_OUT, AUTHN, FORMAT),
    ),
    ("unknown-token", "GetUserSecret", get(), "unknown", Described(C.UNAUTHENTICATED, SIGNED_OUT, AUTHN, INVALID)),
    (
        "duplicate-name",
        "CreateUserSecret",
        create("s", CANARY + "-2"),
        "alice",
        Described(C.ALREADY_EXISTS, VALIDATION_FAILED, "ALREADY_EXISTS", violations=(("name", "name already in use"),)),
    ),
    (
        "permission-denied",
        "UpdateUserSecret",
        pb.UpdateUserSecretRequest(user=ALICE_ID, name="s", value=CANARY + "-3"),
        "bob",
        Described(C.PERMISSION_DENIED, "Forbidden.", "FORBIDDEN"),
    ),
    (
        "no-fields",
        "UpdateUserSecret",
        pb.UpdateUserSecretRequest(user="me", name="s"),
        "alice",
        Described(C.INVALID_ARGUMENT, "At least one field must be provided.", "NO_FIELDS"),
    ),
    (
        "bad-user",
        "DeleteUserSecret",
        pb.DeleteUserSecretRequest(user="nobody", name="s"),
        "alice",
        Described(C.INVALID_ARGUMENT, '"user" must be an existing uuid or username.', "BAD_USER_PARAM"),
    ),
]


def for_user(request: Any, alice_id: str) -> Any:
    filled = type(request)()
    filled.CopyFrom(request)
    if filled.user == ALICE_ID:
        filled.user = alice_id
    return filled


async def test_error_items_get_exactly_the_direct_calls_status(server_stack: ServerStack) -> None:
    alice, a_token = await server_stack.user("alice")
    _, b_token = await server_stack.user("bob")
    metadata = {
        "alice": {"coder-session-token": a_token},
        "bob": {"authorization": f"Bearer {b_token}"},
        "nobody": {},
        "garbage": {"coder-session-token": "garbage"},
        "unknown": {"coder-session-token": UNKNOWN_TOKEN},
    }
    async with relay_batch(server_stack) as batch, server_stack.stub() as stub:
        await stub.CreateUserSecret(create("s", env_name="E"), metadata=md(a_token))
        before = await user_state(server_stack.redis, alice.id)
        requests = [(method, for_user(request, alice.id), metadata[who]) for _, method, request, who, _ in ERROR_CASES]
        calls = [item(method, request, **given) for method, request, given in requests]
        # A token on the batch itself is nobody's: it must not stand in for an item that has none.
        results = await batch(calls, metadata=md(a_token))
        direct = [await direct_status(stub, method, request, given) for method, request, given in requests]
    for (case, *_, expected), result, own in zip(ERROR_CASES, results, direct, strict=True):
        assert described(result.status) == expected, case
        assert result.status == own, case
        assert result.status.SerializeToString(deterministic=True) == own.SerializeToString(deterministic=True), case
        assert result.response == b"", case
    assert await user_state(server_stack.redis, alice.id) == before


async def direct_values_of(stack: ServerStack, token: str) -> pb.ListUserSecretValuesResponse:
    async with stack.stub() as stub:
        return await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="alice"), metadata=md(token))


async def test_success_items_answer_like_direct_calls_and_store_the_same(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("alice")
    injector, service_token = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    async with relay_batch(server_stack) as batch, server_stack.stub() as stub:
        for name in ("kept", "changed", "gone"):
            await stub.CreateUserSecret(create(name, f"v-{name}"), metadata=md(token))
        results = await batch(
            [
                item("GetUserSecret", get("kept"), token),
                item("CreateUserSecret", create("new", "v-new", env_name="NEW_ENV", file_path="~/new"), token),
                item(
                    "UpdateUserSecret",
                    pb.UpdateUserSecretRequest(user="me", name="changed", value="v-changed-2", description="d"),
                    token,
                ),
                item("DeleteUserSecret", pb.DeleteUserSecretRequest(user="me", name="gone"), token),
            ]
        )
        got, new, changed = (parsed(results[i], pb.UserSecret) for i in range(3))
        assert parsed(results[3], empty_pb2.Empty) == empty_pb2.Empty()
        assert results[3].response == b""
        assert got == await stub.GetUserSecret(get("kept"), metadata=md(token))
        assert changed == await stub.GetUserSecret(get("changed"), metadata=md(token))
        listed = await stub.ListUserSecrets(listing(), metadata=md(token))
        values = await batch(
            [item("ListUserSecretValues", pb.ListUserSecretValuesRequest(user="alice"), service_token)]
        )
    assert [s.name for s in listed.secrets] == ["changed", "kept", "new"]
    assert list(listed.secrets) == [changed, got, new]
    assert (new.name, new.env_name, new.file_path, new.description) == ("new", "NEW_ENV", "~/new", "")
    assert changed.description == "d"
    assert changed.updated_at.ToMicroseconds() > changed.created_at.ToMicroseconds()
    # The value RPC has no REST route and is not relayed: a mesh policy keeping it to the builders holds.
    assert (values[0].status.code, values[0].status.message, values[0].response) == (
        code_pb2.UNIMPLEMENTED,
        "Method not found.",
        b"",
    )
    direct_values = await direct_values_of(server_stack, service_token)
    assert [(v.secret.name, v.value) for v in direct_values.values] == [
        ("changed", "v-changed-2"),
        ("kept", "v-kept"),
        ("new", "v-new"),
    ]
    redis = server_stack.redis
    assert await redis.exists(keys.secret(alice.id, "gone")) == 0
    assert await redis.hget(keys.secret(alice.id, "new"), "id") == new.id.encode()
    assert await redis.hgetall(keys.env_index(alice.id)) == {b"NEW_ENV": b"new"}
    assert await redis.hgetall(keys.file_index(alice.id)) == {b"~/new": b"new"}
    assert await user_state(redis, injector.id) == {}


async def test_a_batch_of_257_calls_fails_whole_and_256_run(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    async with relay_batch(server_stack) as batch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await batch([item("ListUserSecrets", listing(), token)] * 257)
        assert (refused.value.code(), refused.value.details()) == (C.INVALID_ARGUMENT, TOO_MANY)
        assert calls_total(server_stack, "ListUserSecrets", "OK") == 0
        results = await batch([item("ListUserSecrets", listing(), token)] * 256)
        assert await batch([]) == []
    assert [parsed(r, pb.ListUserSecretsResponse) for r in results] == [pb.ListUserSecretsResponse()] * 256
    assert calls_total(server_stack, "ListUserSecrets", "OK") == 256


async def test_unknown_methods_and_unparsable_requests_fail_alone(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    unknown = plain(C.UNIMPLEMENTED, UNKNOWN_METHOD)
    unparsable = plain(C.INVALID_ARGUMENT, UNPARSABLE)
    nested = pb.ListUserSecretsRequest(user="me").SerializeToString()
    cases = [
        (item("/usersecrets.v1.Relay/Batch", nested, token), unknown),
        (item("/usersecrets.v1.UserSecretsService/NoSuchMethod", nested, token), unknown),
        (item("usersecrets.v1.UserSecretsService/ListUserSecrets", nested, token), unknown),
        (item("/usersecrets.v1.UserSecretsService/listusersecrets", nested, token), unknown),
        (item("/grpc.health.v1.Health/Check", b"", token), unknown),
        (item("", nested, token), unknown),
        (item("ListUserSecrets", b"\x0a\x05me", token), unparsable),  # a field longer than the message
        (item("GetUserSecret", b"\x12\x01\xff", token), unparsable),  # a name that is not UTF-8
        (item("CreateUserSecret", b"\xff\xff\xff\xff", token), unparsable),
    ]
    async with relay_batch(server_stack) as batch:
        results = await batch([call for call, _ in cases] + [item("ListUserSecrets", nested, token)])
    assert [(r.status, r.response) for r in results[:-1]] == [(status, b"") for _, status in cases]
    assert parsed(results[-1], pb.ListUserSecretsResponse) == pb.ListUserSecretsResponse()
