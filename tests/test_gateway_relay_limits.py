"""The gateway's relay at its limits: each request keeps its own deadline, an outage is a fast 503, and batches
do not break on gRPC's message size limits."""

from __future__ import annotations

import asyncio
import time

from tests.support.gateway_stack import call, gateway_in_front_of
from tests.support.redis_proc import RedisProcess
from tests.support.relay_gateway import (
    DEADLINE_BODY,
    SECRETS,
    VALIDATION_FAILED,
    eventually,
    gated_gateway,
    normalised,
    pause_redis,
    relay_client,
    relay_histogram,
    timed,
    wait_queued,
)
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway import errors

# ---- each request keeps its own deadline ------------------------------------------------------------


async def test_short_deadline_is_504_while_a_concurrent_long_one_succeeds(own_redis: RedisProcess) -> None:
    async with running_server(own_redis.url) as server, gateway_in_front_of(server) as gw:
        _, token = await server.user("alice")
        created = await call(gw.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
        assert created.status == 201
        await pause_redis(own_redis.url, 1500)  # far past 0.2 s: a busy machine cannot blur the two
        (short, short_seconds), long = await asyncio.gather(
            timed(call(gw.http, "GET", f"{SECRETS}/k", token=token, headers={"Grpc-Timeout": "200m"})),
            call(gw.http, "GET", f"{SECRETS}/k", token=token, headers={"Grpc-Timeout": "5S"}),
        )
        assert (short.status, short.json) == (504, DEADLINE_BODY)
        assert short_seconds < 1.2
        assert (long.status, long.json) == (200, created.json)


async def test_deadline_of_one_call_inside_a_shared_batch(own_redis: RedisProcess) -> None:
    async with running_server(own_redis.url) as server, gated_gateway(server, relay_in_flight=1) as rig:
        _, token = await server.user("alice")
        created = await call(rig.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
        assert created.status == 201
        blocker = await rig.hold_batch(call(rig.http, "GET", SECRETS, token=token))
        item = f"{SECRETS}/k"
        short = asyncio.create_task(timed(call(rig.http, "GET", item, token=token, headers={"Grpc-Timeout": "200m"})))
        long = asyncio.create_task(call(rig.http, "GET", item, token=token, headers={"Grpc-Timeout": "5S"}))
        await wait_queued(rig.relay, 2)
        await pause_redis(own_redis.url, 1500)  # far past 0.2 s: a busy machine cannot blur the two
        rig.gated.open()  # the two queued calls now leave together, into the paused Redis
        short_reply, short_seconds = await short
        assert (short_reply.status, short_reply.json) == (504, DEADLINE_BODY)
        assert short_seconds < 1.2
        long_reply = await long
        assert (long_reply.status, long_reply.json) == (200, created.json)
        assert ((await blocker).status, (await blocker).json) == (200, [created.json])
        assert [len(b.calls) for b in rig.gated.batches] == [1, 1, 2]


async def test_time_spent_queued_counts_against_the_servers_deadline(own_redis: RedisProcess) -> None:
    """A call that waited in the gateway's queue has less time left when its batch leaves; the server must be
    told that, or it may store a write after the gateway has answered the caller 504 (the direct path's
    deadline check after authentication exists to prevent exactly that)."""
    async with running_server(own_redis.url) as server, gated_gateway(server, relay_in_flight=1) as rig:
        _, token = await server.user("alice")
        blocker = await rig.hold_batch(call(rig.http, "GET", SECRETS, token=token))
        started = time.monotonic()
        body = {"name": "late", "value": "v"}
        late = asyncio.create_task(
            call(rig.http, "POST", SECRETS, token=token, body=body, headers={"Grpc-Timeout": "400m"})
        )
        await wait_queued(rig.relay, 1)
        await asyncio.sleep(max(0.0, started + 0.25 - time.monotonic()))
        # Queued 250 ms of its 400; Redis then holds it until ~500 ms, past its deadline.
        await pause_redis(own_redis.url, 250)
        rig.gated.open()
        reply = await late
        assert (reply.status, reply.json) == (504, DEADLINE_BODY)
        assert ((await blocker).status, (await blocker).raw) == (200, b"[]")
        sent_us = rig.gated.batches[-1].calls[0].timeout_us
        stored = await eventually(rig.http, SECRETS, token, 200)
        assert (stored.status, normalised(stored.json)) == (200, []), (
            f"written after its 504: the batch told the server timeout_us={sent_us} (the full 400 ms) "
            "although the call had waited ~250 ms in the queue"
        )


# ---- server down ------------------------------------------------------------------------------------


async def test_server_down_is_fast_503_through_relay_then_recovers(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack) as gw:
        client = relay_client(gw.gateway.app)
        _, token = await gw.user("alice")
        created = await call(gw.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
        assert created.status == 201
        await server_stack.app.stop(0)
        try:
            started = time.monotonic()
            for method, path in [("GET", SECRETS), ("GET", f"{SECRETS}/k"), ("DELETE", f"{SECRETS}/k")]:
                reply = await call(gw.http, method, path, token=token)
                assert (reply.status, reply.json) == (503, {"message": errors.UNAVAILABLE}), method
            replies = await asyncio.gather(*(call(gw.http, "GET", f"{SECRETS}/k", token=token) for _ in range(5)))
            assert [(r.status, r.json) for r in replies] == [(503, {"message": errors.UNAVAILABLE})] * 5
            assert time.monotonic() - started < 2.0, "a down server must not hold requests until their deadline"
            assert client.supported is True  # UNAVAILABLE is an outage, not a server without Relay
            assert (await relay_histogram(gw.http)).sum == 1 + 3 + 5  # every call went out in a batch
        finally:
            restarted = await gw.restart_server()
        try:
            reply = await eventually(gw.http, f"{SECRETS}/k", token, 200)
            assert (reply.status, reply.json) == (200, created.json)
            assert client.supported is True
        finally:
            await restarted.stop(0)


# ---- batch size: gRPC's 4 MiB message limit ---------------------------------------------------------


async def test_answers_too_big_for_one_message_still_reach_each_caller(server_stack: ServerStack) -> None:
    """12 lists of ~410 kB each: fine one by one (the direct path), over 4 MiB as one batch's answer."""
    async with gated_gateway(server_stack, relay_in_flight=1) as rig:
        _, token = await server_stack.user("alice")
        for i in range(50):
            body = {
                "name": f"k{i:02d}",
                "value": "v",
                "description": "d" * 4096,
                "file_path": f"/{i:02d}/" + "f" * 4090,
            }
            assert (await call(rig.http, "POST", SECRETS, token=token, body=body)).status == 201
        listed = await call(rig.http, "GET", SECRETS, token=token)
        assert listed.status == 200 and len(listed.json) == 50
        blocker = await rig.hold_batch(call(rig.http, "GET", f"{SECRETS}/k00", token=token))
        lists = [asyncio.create_task(call(rig.http, "GET", SECRETS, token=token)) for _ in range(12)]
        await wait_queued(rig.relay, 12)
        rig.gated.open()
        assert (await blocker).status == 200
        replies = [await task for task in lists]
        assert [(r.status, r.raw) for r in replies] == [(200, listed.raw)] * 12
        assert [len(b.calls) for b in rig.gated.batches[-2:]] == [1, 12]


async def test_requests_too_big_for_one_message_do_not_fail_their_batch(server_stack: ServerStack) -> None:
    """Five ~1 MB bodies (each under the gateway's 1 MiB cap, each refused by validation on its own) must not
    turn a stranger's small call in the same batch into an error, nor themselves into something else."""
    too_long = {
        "message": VALIDATION_FAILED,
        "validations": [{"field": "value", "detail": "value must not exceed 24576 bytes"}],
    }
    async with (
        gated_gateway(server_stack, relay_in_flight=1) as rig,
        gateway_in_front_of(server_stack, relay_in_flight=0) as direct,
    ):
        _, alice = await server_stack.user("alice")
        _, bob = await server_stack.user("bob")
        big = [{"name": f"big{i}", "value": "x" * 1_000_000} for i in range(5)]
        reference = await call(direct.http, "POST", SECRETS, token=alice, body=big[0])
        assert (reference.status, reference.json) == (400, too_long)
        blocker = await rig.hold_batch(call(rig.http, "GET", SECRETS, token=bob))
        posts = [asyncio.create_task(call(rig.http, "POST", SECRETS, token=alice, body=b)) for b in big]
        small = asyncio.create_task(call(rig.http, "GET", SECRETS, token=bob))
        await wait_queued(rig.relay, 6)
        rig.gated.open()
        assert ((await blocker).status, (await blocker).raw) == (200, b"[]")
        replies = [await task for task in [*posts, small]]
        assert [(r.status, r.raw if r.status == 200 else r.json) for r in replies] == [(400, too_long)] * 5 + [
            (200, b"[]")
        ]
        # The gateway sent the blocker alone, then the six in three batches that fit its 2 MiB request budget
        # (at most two of the 1 MB bodies each; which call joins which depends on when each body was read).
        seen = await relay_histogram(rig.http)
        assert (seen.count, seen.sum, seen.buckets["4.0"]) == (4, 7, 4)
