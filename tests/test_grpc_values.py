"""Values: ListUserSecretValues returns them decrypted and sorted; at rest they are sealed and bound to their
secret (CONTRACT.md section 4). A value that cannot be opened is DATA_LOSS, never a wrong value."""

from __future__ import annotations

import grpc
import pytest

from tests.support.grpc_helpers import all_redis_bytes, assert_absent, fails, md
from tests.support.stack import ServerStack, running_server
from usersecrets.server import keys
from usersecrets.server.crypto import KeyRing, generate_key_spec
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

DECRYPTION_FAILED = "A stored secret value could not be decrypted."
CANARY_A = "canary-a-2b7e1516"
CANARY_B = "canary-b-28aed2a6"

# Names in an order that byte order, code-point order and case-insensitive order all disagree on.
VALUES = {
    "b": CANARY_A,
    "B": "ünïcödé ✓ " + CANARY_B,
    "a b": "",
    "é": "x" * 24576,
    "Z": "multi\nline\tvalue",
    "a": "é" * 12288,
    "_": " leading and trailing ",
}


def byte_order(names: list[str]) -> list[str]:
    return sorted(names, key=str.encode)


async def values_of(stub: pb_grpc.UserSecretsServiceStub, token: str, user: str) -> list[tuple[str, str]]:
    answer = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), metadata=md(token))
    return [(v.secret.name, v.value) for v in answer.values]


async def data_loss(stub: pb_grpc.UserSecretsServiceStub, token: str, user: str, detail: str) -> None:
    failure = await fails(stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), metadata=md(token)))
    assert (failure.code, failure.message) == (grpc.StatusCode.DATA_LOSS, DECRYPTION_FAILED)
    assert (failure.reason, failure.detail, failure.violations) == ("DECRYPTION_FAILED", detail, [])
    assert_absent(failure.raw, CANARY_A, CANARY_B, token)


async def test_values_decrypted_and_sorted_by_name_bytes(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("alice")
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    async with server_stack.stub() as stub:
        empty_list = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        assert list(empty_list.secrets) == []
        assert await values_of(stub, service, "alice") == []
        for name, value in VALUES.items():
            # "" cannot be created; it is set by PATCH, as the contract allows.
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name=name, value=value or "tmp", file_path=f"/{name}"),
                metadata=md(token),
            )
            if not value:
                await stub.UpdateUserSecret(
                    pb.UpdateUserSecretRequest(user="me", name=name, value=""), metadata=md(token)
                )
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        answer = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=alice.id), metadata=md(service))
    expected_order = byte_order(list(VALUES))
    assert expected_order == ["B", "Z", "_", "a", "a b", "b", "é"]
    assert [s.name for s in listed.secrets] == expected_order
    assert [(v.secret.name, v.value) for v in answer.values] == [(n, VALUES[n]) for n in expected_order]
    assert [v.secret for v in answer.values] == list(listed.secrets)


async def test_no_plaintext_at_rest(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        for name in ("one", "two"):
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name=name, value=CANARY_A), metadata=md(token)
            )
        await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="three", value="x"), metadata=md(token))
        await stub.UpdateUserSecret(
            pb.UpdateUserSecretRequest(user="me", name="three", value=CANARY_B), metadata=md(token)
        )
    everything = await all_redis_bytes(server_stack.redis)
    assert CANARY_A.encode() not in everything
    assert CANARY_B.encode() not in everything
    assert token.split("-")[1].encode() not in everything  # only a hash of the token's secret is stored
    one = await server_stack.redis.hgetall(keys.secret(alice.id, "one"))
    two = await server_stack.redis.hgetall(keys.secret(alice.id, "two"))
    # Same plaintext, different ciphertexts (fresh nonce), both under the active key.
    assert one[b"value"] != two[b"value"]
    active = KeyRing.parse(server_stack.key_spec).active_id.encode()
    assert one[b"key_id"] == two[b"key_id"] == active
    assert one[b"value_len"] == str(len(CANARY_A)).encode()


@pytest.mark.parametrize("target", ["same-user", "other-user"])
async def test_ciphertext_copied_onto_another_secret_is_data_loss(server_stack: ServerStack, target: str) -> None:
    alice, alice_token = await server_stack.user("alice")
    bob, bob_token = await server_stack.user("bob")
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="src", value=CANARY_A), metadata=md(alice_token)
        )
        await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="dst", value=CANARY_B), metadata=md(alice_token)
        )
        await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="src", value=CANARY_B), metadata=md(bob_token)
        )
        victim = alice if target == "same-user" else bob
        victim_key = keys.secret(victim.id, "dst" if target == "same-user" else "src")
        source = await server_stack.redis.hgetall(keys.secret(alice.id, "src"))
        await server_stack.redis.hset(victim_key, mapping={"value": source[b"value"], "key_id": source[b"key_id"]})
        await data_loss(stub, service, victim.username, "authentication failed")
        # The metadata RPCs do not decrypt and keep working; the untouched user still reads fine.
        got = await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="src"), metadata=md(bob_token))
        assert got.name == "src"
        if target == "other-user":
            assert await values_of(stub, service, "alice") == [("dst", CANARY_B), ("src", CANARY_A)]


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), "authentication failed", id="flipped-tag-bit"),
        pytest.param(lambda b: b[:30] + bytes([b[30] ^ 0x80]) + b[31:], "authentication failed", id="flipped-body-bit"),
        pytest.param(lambda b: b[:20], "malformed ciphertext", id="truncated"),
        pytest.param(lambda b: b"\x02" + b[1:], "malformed ciphertext", id="unknown-version"),
        pytest.param(lambda b: CANARY_A.encode(), "malformed ciphertext", id="plaintext-planted"),
    ],
)
async def test_tampered_ciphertext_is_data_loss(server_stack: ServerStack, tamper, detail: str) -> None:  # type: ignore[no-untyped-def]
    alice, token = await server_stack.user("alice")
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="s", value=CANARY_B), metadata=md(token))
        key = keys.secret(alice.id, "s")
        blob = await server_stack.redis.hget(key, "value")
        await server_stack.redis.hset(key, "value", tamper(blob))
        await data_loss(stub, service, "alice", detail)


async def test_key_ring_without_the_old_key_is_data_loss(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    old_ring = KeyRing.parse(server_stack.key_spec)
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="old", value=CANARY_A), metadata=md(token)
        )
    new_spec = generate_key_spec()
    async with running_server(server_stack.redis_url, key_spec=new_spec) as fresh, fresh.stub() as stub:
        await data_loss(stub, service, "alice", f"unknown key id {old_ring.active_id}")
    # With the old key kept second, old values open and new ones are sealed under the new first key.
    async with running_server(server_stack.redis_url, key_spec=f"{new_spec},{server_stack.key_spec}") as both:
        async with both.stub() as stub:
            await stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="new", value=CANARY_B), metadata=md(token)
            )
            assert await values_of(stub, service, "alice") == [("new", CANARY_B), ("old", CANARY_A)]
        alice_key = keys.secret((await both.app.identity.user_by_name("alice")).id, "new")  # type: ignore[union-attr]
        assert await both.redis.hget(alice_key, "key_id") == KeyRing.parse(new_spec).active_id.encode()
