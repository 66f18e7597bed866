"""Relay/Batch on the server, at its limits: calls in flight, rate limits, deadlines, metrics, logs, leaks."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from prometheus_client import generate_latest

from tests.support.grpc_helpers import assert_absent, fails, md, user_state
from tests.support.relay_calls import (
    BUSY,
    CANARY,
    DEADLINE,
    NOT_FOUND,
    C,
    Described,
    access_lines,
    calls_total,
    create,
    described,
    direct_status,
    get,
    item,
    listing,
    parsed,
    pause,
    plain,
    relay_batch,
    until,
)
from tests.support.stack import ServerStack, running_server
from usersecrets.common.jsonlog import JsonFormatter
from usersecrets.v1 import usersecrets_pb2 as pb


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
        await pause(server_stack.redis_url, 1200, "WRITE")
        started = time.monotonic()
        results = await batch([item("CreateUserSecret", create("late"), token, timeout_us=150_000)])
        elapsed = time.monotonic() - started
    assert (results[0].status, results[0].response) == (plain(C.DEADLINE_EXCEEDED, DEADLINE), b"")
    assert 0.15 <= elapsed < 1.0, elapsed
    assert calls_total(server_stack, "CreateUserSecret", "DEADLINE_EXCEEDED") == 1
    await asyncio.sleep(max(0.0, started + 1.25 - time.monotonic()))  # the pause is over
    assert await user_state(server_stack.redis, alice.id) == {}


async def test_an_item_waiting_on_authentication_is_cut_at_its_deadline_like_a_direct_call(
    server_stack: ServerStack,
) -> None:
    _, token = await server_stack.user("alice")
    registry = server_stack.app.metrics.registry
    async with relay_batch(server_stack) as batch, server_stack.stub() as stub:
        # Redis paused far past the 0.2 s deadline: "cut at the deadline" and "held until Redis answers" stay
        # apart even on a busy machine.
        await pause(server_stack.redis_url, 1500)
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
    assert direct_seconds is not None and direct_seconds < 1.0, direct_seconds
    relayed_seconds = registry.get_sample_value("usersecrets_grpc_call_seconds_sum", {"method": "ListUserSecrets"})
    # A relayed call must be cut there as well: held longer, it keeps its caller's batch and an in-flight place.
    assert (elapsed < 1.0, relayed_seconds is not None and relayed_seconds < 1.0) == (True, True), (
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
