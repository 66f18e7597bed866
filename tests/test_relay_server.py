"""Relay/Batch on the server: each relayed call behaves, to the status byte, like the same call made on its own."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import code_pb2
from prometheus_client import generate_latest

from tests.support.grpc_helpers import VALIDATION_FAILED, assert_absent, fails, md, user_state
from tests.support.relay_calls import (
    Described,
    access_lines,
    calls_total,
    described,
    direct_status,
    item,
    parsed,
    pause,
    plain,
    relay_batch,
    until,
)
from tests.support.stack import ServerStack, running_server
from usersecrets.common.jsonlog import JsonFormatter
from usersecrets.server import keys
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb

CANARY = "canary-7c3d-relay-value"
SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
MISSING = 'Header "Coder-Session-Token" (or "Authorization: Bearer <token>") must be provided.'
AUTHN = "UNAUTHENTICATED"
FORMAT = "Invalid API key format."
INVALID = "API key is invalid."
NOT_FOUND = "Resource not found or you do not have access to this resource"
UNKNOWN_TOKEN = "abcdefghij-" + "x" * 22
TOO_MANY = "A relay batch holds at most 256 calls."
UNKNOWN_METHOD = "Method not found."
UNPARSABLE = "The request message could not be parsed."
BUSY = "Too many calls in flight. Try again later."
DEADLINE = "Deadline exceeded."
C = grpc.StatusCode


def create(name: str = "s", value: str = CANARY, user: str = "me", **fields: str) -> pb.CreateUserSecretRequest:
    return pb.CreateUserSecretRequest(user=user, name=name, value=value, **fields)


def get(name: str = "s", user: str = "me") -> pb.GetUserSecretRequest:
    return pb.GetUserSecretRequest(user=user, name=name)


def listing(user: str = "me") -> pb.ListUserSecretsRequest:
    return pb.ListUserSecretsRequest(user=user)


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


async def test_calls_in_flight_through_relays_are_bounded(redis_url: str) -> None:
    async with running_server(redis_url, max_concurrent_rpcs=2) as stack:
        _, token = await stack.user("alice")
        async with stack.stub() as stub, relay_batch(stack) as batch:
            secret = await stub.CreateUserSecret(create(), metadata=md(token))
            # The first two items are waiting on Redis when the other three arrive.
            await pause(redis_url, 300)
            results = await batch([item("GetUserSecret", get(), token)] * 5)
            assert [parsed(r, pb.UserSecret) for r in results[:2]] == [secret] * 2
            assert [r.status for r in results[2:]] == [plain(C.RESOURCE_EXHAUSTED, BUSY)] * 3
            assert [r.response for r in results[2:]] == [b""] * 3

            # The bound is shared by every batch: a second batch finds both places taken.
            in_flight = stack.app.metrics.registry
            await pause(redis_url, 300)
            first = asyncio.ensure_future(batch([item("GetUserSecret", get(), token)] * 2))
            await until(lambda: in_flight.get_sample_value("usersecrets_grpc_in_flight") == 2)
            second = await batch([item("GetUserSecret", get(), token)] * 2)
            assert [r.status for r in second] == [plain(C.RESOURCE_EXHAUSTED, BUSY)] * 2
            assert [parsed(r, pb.UserSecret) for r in await first] == [secret] * 2
            # Once the first batch is answered its places are free again.
            third = await batch([item("GetUserSecret", get(), token)] * 2)
            assert [parsed(r, pb.UserSecret) for r in third] == [secret] * 2
        assert calls_total(stack, "GetUserSecret", "OK") == 6


RETRY_DETAIL = re.compile(r"Try again in (\d\.\d{3}) seconds\.")


async def test_rate_limit_is_per_token_across_items(redis_url: str) -> None:
    async with running_server(redis_url, rate_limit_per_second=1, rate_limit_burst=3) as stack:
        _, a_token = await stack.user("alice")
        _, b_token = await stack.user("bob")
        async with relay_batch(stack) as batch, stack.stub() as stub:
            results = await batch(
                [item("ListUserSecrets", listing(), a_token)] * 5 + [item("ListUserSecrets", listing(), b_token)]
            )
            # The direct call draws on the same bucket as the relayed ones.
            direct = await direct_status(stub, "ListUserSecrets", listing(), {"coder-session-token": a_token})
    ok = [r for r in results[:5] if r.status.code == 0]
    limited = [described(r.status) for r in results[:5] if r.status.code != 0]
    assert [parsed(r, pb.ListUserSecretsResponse) for r in ok] == [pb.ListUserSecretsResponse()] * 3
    assert parsed(results[5], pb.ListUserSecretsResponse) == pb.ListUserSecretsResponse()
    assert len(limited) == 2
    for failure in [*limited, described(direct)]:
        assert (failure.code, failure.message, failure.reason, failure.violations) == (
            C.RESOURCE_EXHAUSTED,
            "Rate limit exceeded.",
            "RATE_LIMITED",
            (),
        )
        match = RETRY_DETAIL.fullmatch(failure.detail or "")
        assert match is not None, failure
        # The bucket was emptied a moment ago and refills one call a second.
        assert failure.retry_seconds is not None and 0.5 < failure.retry_seconds <= 1.0, failure
        assert abs(float(match.group(1)) - failure.retry_seconds) <= 0.0005 + 1e-9, failure
    assert calls_total(stack, "ListUserSecrets", "OK") == 4
    assert calls_total(stack, "ListUserSecrets", "RESOURCE_EXHAUSTED") == 3


async def test_an_item_whose_deadline_passed_while_authenticating_does_nothing(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("alice")
    async with relay_batch(server_stack) as batch, server_stack.stub() as stub:
        await pause(server_stack.redis_url, 600)
        results = await batch(
            [
                item("CreateUserSecret", create("late"), token, timeout_us=200_000),
                # No deadline of its own: the other item's deadline is not this one's.
                item("GetUserSecret", get("late"), token),
            ]
        )
        assert (results[0].status, results[0].response) == (plain(C.DEADLINE_EXCEEDED, DEADLINE), b"")
        assert described(results[1].status) == Described(C.NOT_FOUND, NOT_FOUND, "NOT_FOUND")
        assert await stub.ListUserSecrets(listing(), metadata=md(token)) == pb.ListUserSecretsResponse()
    assert await user_state(server_stack.redis, alice.id) == {}
    assert calls_total(server_stack, "CreateUserSecret", "DEADLINE_EXCEEDED") == 1


async def test_an_item_still_running_at_its_deadline_is_cancelled(server_stack: ServerStack) -> None:
    alice, token = await server_stack.user("alice")
    async with relay_batch(server_stack) as batch:
        # Reads pass (authentication), the create's script waits behind the pause.
        await pause(server_stack.redis_url, 500, "WRITE")
        started = time.monotonic()
        results = await batch([item("CreateUserSecret", create("late"), token, timeout_us=150_000)])
        elapsed = time.monotonic() - started
    assert (results[0].status, results[0].response) == (plain(C.DEADLINE_EXCEEDED, DEADLINE), b"")
    assert 0.15 <= elapsed < 0.4, elapsed
    assert calls_total(server_stack, "CreateUserSecret", "DEADLINE_EXCEEDED") == 1
    await asyncio.sleep(max(0.0, started + 0.55 - time.monotonic()))  # the pause is over
    assert await user_state(server_stack.redis, alice.id) == {}


async def test_an_item_waiting_on_authentication_is_cut_at_its_deadline_like_a_direct_call(
    server_stack: ServerStack,
) -> None:
    _, token = await server_stack.user("alice")
    registry = server_stack.app.metrics.registry
    async with relay_batch(server_stack) as batch, server_stack.stub() as stub:
        await pause(server_stack.redis_url, 600)
        started = time.monotonic()
        direct = stub.GetUserSecret(get(), metadata=md(token), timeout=0.2)
        relayed, failure = await asyncio.gather(
            batch([item("ListUserSecrets", listing(), token, timeout_us=200_000)]), fails(direct)
        )
        elapsed = time.monotonic() - started
    assert (failure.code, failure.message) == (C.DEADLINE_EXCEEDED, "Deadline Exceeded")  # grpc's own words
    assert (relayed[0].status, relayed[0].response) == (plain(C.DEADLINE_EXCEEDED, DEADLINE), b"")
    # grpc ends the direct call at its deadline on the server too, whatever the call is waiting on.
    direct_seconds = registry.get_sample_value("usersecrets_grpc_call_seconds_sum", {"method": "GetUserSecret"})
    assert direct_seconds is not None and direct_seconds < 0.4, direct_seconds
    relayed_seconds = registry.get_sample_value("usersecrets_grpc_call_seconds_sum", {"method": "ListUserSecrets"})
    # A relayed call must be cut there as well: held longer, it keeps its caller's batch and an in-flight place.
    assert (elapsed < 0.4, relayed_seconds is not None and relayed_seconds < 0.4) == (True, True), (
        f"the relayed call (deadline 0.2 s) was answered after {elapsed:.3f} s and ran {relayed_seconds:.3f} s: "
        "server/relay.py applies the deadline to the handler only, not to authentication"
    )


METHODS = ["CreateUserSecret", "GetUserSecret", "ListUserSecrets", "UpdateUserSecret"]


async def test_each_item_is_counted_and_logged_with_its_own_request_id(
    server_stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Formatted as each record is emitted, inside its call's task: that is where the request id lives.
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.INFO, logger="usersecrets.server.access")
    alice, token = await server_stack.user("alice")
    async with relay_batch(server_stack) as batch:
        await batch(
            [
                item("CreateUserSecret", create(), token, **{"x-request-id": "rid-create"}),
                item("GetUserSecret", get("nope"), token, **{"x-request-id": "rid-get"}),
                item("ListUserSecrets", listing(), **{"x-request-id": "rid-list"}),
                item("UpdateUserSecret", pb.UpdateUserSecretRequest(user="me", name="s"), token),
            ],
            metadata=(("x-request-id", "rid-batch"),),
        )
    lines = access_lines(caplog.text)
    by_method = {line["method"]: line for line in lines}
    assert (len(lines), len(by_method)) == (4, 4), lines
    assert [(m, by_method[m]["request_id"], by_method[m]["code"], by_method[m]["user_id"]) for m in METHODS] == [
        ("CreateUserSecret", "rid-create", "OK", alice.id),
        ("GetUserSecret", "rid-get", "NOT_FOUND", alice.id),
        ("ListUserSecrets", "rid-list", "UNAUTHENTICATED", ""),
        ("UpdateUserSecret", by_method["UpdateUserSecret"]["request_id"], "INVALID_ARGUMENT", alice.id),
    ]
    # Without an x-request-id of its own an item gets a fresh one, never the batch's.
    assert re.fullmatch(r"[0-9a-f]{32}", by_method["UpdateUserSecret"]["request_id"]), lines
    registry = server_stack.app.metrics.registry
    counted = {(m, line["code"]): calls_total(server_stack, m, line["code"]) for m, line in by_method.items()}
    assert counted == dict.fromkeys(counted, 1.0)
    for method in METHODS:
        assert registry.get_sample_value("usersecrets_grpc_call_seconds_count", {"method": method}) == 1
    assert registry.get_sample_value("usersecrets_grpc_in_flight") == 0
    # The batch is transport, not a call: it is neither counted nor logged.
    assert registry.get_sample_value("usersecrets_grpc_call_seconds_count", {"method": "Batch"}) is None


async def test_values_and_tokens_never_leave_through_relay_results_logs_or_metrics(
    server_stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.DEBUG)
    _, token = await server_stack.user("alice")
    _, other = await server_stack.user("bob")
    canary_token = "canarytkn-" + "c" * 22
    token_secret = token.split("-")[1]
    async with relay_batch(server_stack) as batch:
        results = await batch(
            [
                item("CreateUserSecret", create("s"), token),
                item("CreateUserSecret", create("s", CANARY + "-dup"), token),
                item("CreateUserSecret", create("t", CANARY + "\x00", env_name="PATH"), token),
                item("UpdateUserSecret", pb.UpdateUserSecretRequest(user="me", name="nope", value=CANARY), token),
                item("UpdateUserSecret", pb.UpdateUserSecretRequest(user="alice", name="s", value=CANARY), other),
                item("CreateUserSecret", create("u"), canary_token),
                item("CreateUserSecret", create("u"), authorization=f"Bearer {canary_token}"),
                item("CreateUserSecret", create("u"), f"{token}x"),
                item("CreateUserSecret", create("u"), f"{canary_token} "),
                item("/usersecrets.v1.Nope/Create", create("u"), token),
                item("GetUserSecret", get("s"), token),
            ]
        )
    expected = [C.OK, C.ALREADY_EXISTS, C.INVALID_ARGUMENT, C.NOT_FOUND, C.PERMISSION_DENIED]
    assert [described(r.status).code for r in results] == [*expected, *[C.UNAUTHENTICATED] * 4, C.UNIMPLEMENTED, C.OK]
    shipped = b"".join(r.SerializeToString() for r in results)
    metrics_text = generate_latest(server_stack.app.metrics.registry)
    assert access_lines(caplog.text), "no access line was captured"
    for text in (shipped, caplog.text, metrics_text, "\n".join(r.getMessage() for r in caplog.records)):
        assert_absent(text, CANARY, canary_token, token, token_secret, "c" * 22)
