"""The gateway's relay through REST: calls leave in shared Relay/Batch RPCs, yet each REST request is answered
exactly as a direct call would be (statuses, bodies, Retry-After, its own deadline), a server without Relay
gets direct calls, an outage is a fast 503, and batches do not break on gRPC's message size limits.

All real: Redis, gRPC servers, HTTP. `own_server` (tests/support/relay_gateway.py) is a second real server
over a stack's store, without Relay (an older server) or with the real RelayServicer behind `GatedRelay`,
which records each batch and can hold one batch's answer so the test decides which calls travel together.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of, running_gateway
from tests.support.redis_proc import RedisProcess
from tests.support.relay_gateway import (
    BUCKETS,
    DEADLINE_BODY,
    MISSING_TOKEN,
    NOT_FOUND,
    RETRY_DETAIL,
    SECRETS,
    SIGNED_OUT,
    VALIDATION_FAILED,
    Histogram,
    eventually,
    gated_gateway,
    normalised,
    own_server,
    pause_redis,
    relay_client,
    relay_histogram,
    singles,
    wait_queued,
)
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway import errors
from usersecrets.server import keys

# ---- batching -----------------------------------------------------------------------------------------


async def test_concurrent_requests_leave_in_shared_batches(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack) as gw:
        _, token = await gw.user("alice")
        created: dict[str, Any] = {}
        for i in range(40):
            body = {"name": f"k{i:02d}", "value": f"v{i}", "description": f"d{i}"}
            reply = await call(gw.http, "POST", SECRETS, token=token, body=body)
            assert reply.status == 201, reply
            created[body["name"]] = reply.json
        # One at a time on an idle gateway: each call leaves at once, alone.
        assert await relay_histogram(gw.http) == singles(40)

        replies = await asyncio.gather(*(call(gw.http, "GET", f"{SECRETS}/{n}", token=token) for n in created))
        assert [(r.status, r.json) for r in replies] == [(200, body) for body in created.values()]
        after = await relay_histogram(gw.http)
        assert after.sum == 80
        get_batches = after.count - 40
        assert 1 <= get_batches < 40, after
        assert after.buckets["64.0"] == after.count


async def test_batches_hold_at_most_relay_max_calls(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack, relay_max_calls=4) as gw:
        _, token = await gw.user("alice")
        replies = await asyncio.gather(*(call(gw.http, "GET", SECRETS, token=token) for _ in range(40)))
        assert [(r.status, r.raw) for r in replies] == [(200, b"[]")] * 40
        after = await relay_histogram(gw.http)
        assert after.sum == 40
        assert after.buckets["4.0"] == after.count >= 10, after


async def test_at_most_relay_in_flight_batches_are_out(server_stack: ServerStack) -> None:
    async with gated_gateway(server_stack, relay_in_flight=2) as rig:
        _, token = await server_stack.user("alice")
        first = await rig.hold_batch(call(rig.http, "GET", SECRETS, token=token))
        second = asyncio.create_task(call(rig.http, "GET", SECRETS, token=token))
        await rig.gated.wait_batches(2)  # the second slot: its answer is held too
        rest = [asyncio.create_task(call(rig.http, "GET", SECRETS, token=token)) for _ in range(3)]
        await wait_queued(rig.relay, 3)
        assert len(rig.gated.batches) == 2, "a third batch left while two were out"
        rig.gated.open()
        replies = [await first, await second, *[await r for r in rest]]
        assert [(r.status, r.raw) for r in replies] == [(200, b"[]")] * 5
        assert [len(b.calls) for b in rig.gated.batches] == [1, 1, 3]
        histogram = Histogram(3, 5, {"1.0": 2.0, "2.0": 2.0} | dict.fromkeys(BUCKETS[2:], 3.0))
        assert await relay_histogram(rig.http) == histogram


async def test_a_stalled_batch_gives_its_slot_back(server_stack: ServerStack) -> None:
    """One slow batch (its answer held, as by a paused Redis) must not hold up the calls queued behind it: after
    relay_stall_seconds its slot is free and they leave in a batch of their own, and answer while it is held."""
    async with gated_gateway(server_stack, relay_in_flight=1, relay_stall_seconds=0.2) as rig:
        _, token = await server_stack.user("alice")
        held = await rig.hold_batch(call(rig.http, "GET", SECRETS, token=token))
        started = time.monotonic()
        rig.gated.open_next()  # the next batch is answered at once
        later = await call(rig.http, "GET", SECRETS, token=token)
        waited = time.monotonic() - started
        assert (later.status, later.raw) == (200, b"[]")
        assert not held.done()
        assert 0.15 < waited < 2.0, waited
        assert [len(b.calls) for b in rig.gated.batches] == [1, 1]
        rig.gated.open()
        assert ((await held).status, (await held).raw) == (200, b"[]")


# ---- relay off: the same REST contract --------------------------------------------------------------

SECRET = {
    "id": "<id>",
    "name": "k",
    "description": "d",
    "env_name": "K_ENV",
    "file_path": "~/k",
    "created_at": "<time>",
    "updated_at": "<time>",
}
CONTRACT_TABLE = [
    ("create", 201, SECRET),
    ("list", 200, [SECRET]),
    ("get", 200, SECRET),
    ("patch", 200, SECRET | {"description": "d2"}),
    (
        "invalid",
        400,
        {
            "message": VALIDATION_FAILED,
            "validations": [
                {"field": "name", "detail": "name must not contain '/', '?' or '#'"},
                {"field": "value", "detail": "value is required"},
                {
                    "field": "env_name",
                    "detail": "env_name must start with a letter or underscore and contain only letters, digits "
                    "and underscores",
                },
                {"field": "file_path", "detail": "file_path must start with ~/ or /"},
            ],
        },
    ),
    ("missing", 404, {"message": NOT_FOUND}),
    ("no token", 401, {"message": SIGNED_OUT, "detail": MISSING_TOKEN}),
    ("other user", 403, {"message": "Forbidden."}),
    ("delete", 204, b""),
    ("deleted", 404, {"message": NOT_FOUND}),
]


async def run_contract_table(gw: GatewayStack, tag: str) -> list[tuple[str, int, Any]]:
    """CONTRACT_TABLE's requests, in order, for fresh users; each body normalised."""
    _, token = await gw.user(f"alice-{tag}")
    await gw.user(f"olga-{tag}")
    item = f"{SECRETS}/k"
    body = {"name": "k", "value": "v", "description": "d", "env_name": "K_ENV", "file_path": "~/k"}
    invalid = {"name": "a/b", "value": "", "env_name": "1X", "file_path": "rel"}
    requests: list[tuple[str, str, str, str | None, Any]] = [
        ("create", "POST", SECRETS, token, body),
        ("list", "GET", SECRETS, token, None),
        ("get", "GET", item, token, None),
        ("patch", "PATCH", item, token, {"description": "d2"}),
        ("invalid", "POST", SECRETS, token, invalid),
        ("missing", "GET", f"{SECRETS}/nope", token, None),
        ("no token", "GET", SECRETS, None, None),
        ("other user", "GET", f"/api/v2/users/olga-{tag}/secrets", token, None),
        ("delete", "DELETE", item, token, None),
        ("deleted", "GET", item, token, None),
    ]
    replies = {step: await call(gw.http, m, path, token=t, body=b) for step, m, path, t, b in requests}
    created, patched = replies["create"].json, replies["patch"].json
    # What normalising hides is checked first: one id and created_at throughout, updated_at moved by PATCH.
    assert replies["get"].json == created and replies["list"].json == [created]
    assert (patched["id"], patched["created_at"]) == (created["id"], created["created_at"])
    assert created["updated_at"] == created["created_at"] < patched["updated_at"]
    assert replies["delete"].headers.get("Content-Type") is None
    return [(step, r.status, r.raw if r.status == 204 else normalised(r.json)) for step, r in replies.items()]


async def test_relay_off_and_on_answer_the_same(server_stack: ServerStack) -> None:
    async with (
        gateway_in_front_of(server_stack) as relayed,
        gateway_in_front_of(server_stack, relay_in_flight=0) as direct,
    ):
        through_relay = await run_contract_table(relayed, "relay")
        through_direct = await run_contract_table(direct, "direct")
        assert through_relay == through_direct == CONTRACT_TABLE
        assert await relay_histogram(relayed.http) == singles(len(CONTRACT_TABLE))
        assert await relay_histogram(direct.http) == singles(0)
        assert relay_client(relayed.gateway.app).supported is True
        assert relay_client(direct.gateway.app).supported is False


# ---- a server without the Relay service -------------------------------------------------------------


async def test_server_without_relay_gets_direct_calls(server_stack: ServerStack) -> None:
    async with (
        own_server(server_stack) as target,
        running_gateway(target) as gateway,
        aiohttp.ClientSession(gateway.url) as http,
    ):
        client = relay_client(gateway.app)
        assert client.supported is True
        user, token = await server_stack.user("alice")
        # A write first: had the refused batch run it, the direct call after it would be 409.
        created = await call(http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
        assert created.status == 201, created
        assert client.supported is False
        assert await server_stack.redis.zrange(keys.names(user.id), 0, -1) == [b"k"]

        replies = await asyncio.gather(
            *(call(http, "GET", f"{SECRETS}/k", token=token) for _ in range(10)),
            call(http, "GET", f"{SECRETS}/nope", token=token),
            call(http, "GET", SECRETS),
        )
        assert [(r.status, r.json) for r in replies] == [(200, created.json)] * 10 + [
            (404, {"message": NOT_FOUND}),
            (401, {"message": SIGNED_OUT, "detail": MISSING_TOKEN}),
        ]
        assert await relay_histogram(http) == singles(1)  # only the refused first batch was ever sent


# ---- errors through relay equal the direct path -----------------------------------------------------


async def test_rate_limit_429_is_the_same_through_relay(redis_url: str) -> None:
    async with (
        running_server(redis_url, rate_limit_per_second=1, rate_limit_burst=1) as server,
        gateway_in_front_of(server) as relayed,
        gateway_in_front_of(server, relay_in_flight=0) as direct,
    ):
        seen = {}
        for tag, gw in (("relay", relayed), ("direct", direct)):
            _, token = await server.user(f"alice-{tag}")
            first = await call(gw.http, "GET", SECRETS, token=token)
            assert (first.status, first.raw) == (200, b"[]")
            limited = await call(gw.http, "GET", SECRETS, token=token)
            assert limited.status == 429 and RETRY_DETAIL.match(limited.json["detail"]), limited
            seen[tag] = (limited.status, limited.headers["Retry-After"], limited.json | {"detail": "<wait>"})
        assert seen["relay"] == seen["direct"] == (429, "1", {"message": "Rate limit exceeded.", "detail": "<wait>"})
        assert await relay_histogram(relayed.http) == singles(2)


async def test_deadline_while_redis_is_paused_is_504_both_ways(own_redis: RedisProcess) -> None:
    async with (
        running_server(own_redis.url) as server,
        gateway_in_front_of(server) as relayed,
        gateway_in_front_of(server, relay_in_flight=0) as direct,
    ):
        _, token = await server.user("alice")
        created = await call(relayed.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
        assert created.status == 201
        await pause_redis(own_redis.url, 800)
        timeout = {"Grpc-Timeout": "200m"}
        replies = await asyncio.gather(
            call(relayed.http, "GET", f"{SECRETS}/k", token=token, headers=timeout),
            call(direct.http, "GET", f"{SECRETS}/k", token=token, headers=timeout),
        )
        assert [(r.status, r.json) for r in replies] == [(504, DEADLINE_BODY)] * 2
        for gw in (relayed, direct):
            reply = await eventually(gw.http, f"{SECRETS}/k", token, 200)
            assert (reply.status, reply.json) == (200, created.json)


async def test_status_without_details_is_the_same_through_relay(server_stack: ServerStack) -> None:
    """A call that fails on a bug (here a corrupt stored row) gets a plain INTERNAL status with no google.rpc
    details, inside the batch's results as on a direct call: both are the fixed 500 body."""
    async with (
        gateway_in_front_of(server_stack) as relayed,
        gateway_in_front_of(server_stack, relay_in_flight=0) as direct,
    ):
        user, token = await server_stack.user("alice")
        assert (await call(relayed.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})).status == 201
        await server_stack.redis.hset(keys.secret(user.id, "k"), "created_at", "not a number")
        for gw in (relayed, direct):
            reply = await call(gw.http, "GET", f"{SECRETS}/k", token=token)
            assert (reply.status, reply.json) == (500, {"message": errors.INTERNAL})
        assert await relay_histogram(relayed.http) == singles(2)
