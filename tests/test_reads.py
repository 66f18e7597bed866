"""Pipelined reads (server/reads.py): the HGETALLs issued in one loop turn leave as one pipeline of at most 128
commands, and every caller still gets its own answer, its own error, or its own cancellation.

Round trips are counted on the Redis side with `INFO stats total_reads_processed`: Redis counts one per read
of a client socket, so one pipeline written in one piece (a few KiB, one write on loopback) is one, and the
INFO command that asks is one more. `CONFIG RESETSTAT` zeroes the counters (and `INFO commandstats`) first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis, RedisCluster

from tests.support.faults import Fault, FaultPlan, Kind, inject
from tests.support.grpc_helpers import md
from tests.support.stack import running_server
from usersecrets.common.localhost import free_port
from usersecrets.server.reads import MAX_PIPELINE, PipelinedReads, pipelined_reads
from usersecrets.server.redis_client import connect
from usersecrets.v1 import usersecrets_pb2 as pb

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
DROPPED = "fault injected: connection dropped before the command was sent"
PAUSE_MS = 250  # Redis holds every command this long; a leaving caller gives up after LEAVE_AFTER
LEAVE_AFTER = 0.05


def key(i: int) -> str:
    return f"h:{i}"


def stored(i: int) -> dict[bytes, bytes]:
    return {b"n": str(i).encode(), b"sq": str(i * i).encode()}


async def seed(admin: Redis, count: int) -> None:
    pipe = admin.pipeline(transaction=False)
    for i in range(count):
        pipe.hset(key(i), mapping=stored(i))
    await pipe.execute()


def pool_size(client: Redis) -> int:
    """Connections the client's pool has opened (redis-py has no public view of them)."""
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def stats(admin: Redis) -> dict[str, Any]:
    return await admin.info("stats")


async def hgetall_calls(admin: Redis) -> int:
    return (await admin.info("commandstats")).get("cmdstat_hgetall", {}).get("calls", 0)


async def warm(url: str, **options: Any) -> Redis:
    """A standalone client whose one connection has done its handshake, so later reads are only reads."""
    client = connect(url, **options)
    assert isinstance(client, Redis)
    await client.ping()
    assert pool_size(client) == 1
    return client


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    assert isinstance(client, Redis)
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = await warm(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def reads(client: Redis) -> PipelinedReads:
    found = pipelined_reads(client)
    assert isinstance(found, PipelinedReads)
    return found


async def test_concurrent_reads_share_one_round_trip_and_one_connection(
    redis_url: str, admin: Redis, client: Redis, reads: PipelinedReads
) -> None:
    await seed(admin, 39)  # h:39 is missing
    await admin.config_resetstat()
    answers = await asyncio.gather(*(reads.hgetall(key(i)) for i in range(40)))
    after = await stats(admin)
    assert answers == [stored(i) for i in range(39)] + [{}]
    # One socket read for the 40 reads, one for the INFO that asks.
    assert after["total_reads_processed"] == 2
    assert await hgetall_calls(admin) == 40
    assert pool_size(client) == 1

    # The same 40 reads straight through the client each check out a connection of their own.
    direct = await warm(redis_url)
    try:
        assert await asyncio.gather(*(direct.hgetall(key(i)) for i in range(40))) == answers
        assert pool_size(direct) == 40
    finally:
        await direct.aclose()


@pytest.mark.parametrize(
    ("count", "pipelines"),
    [(1, 1), (2, 1), (MAX_PIPELINE, 1), (MAX_PIPELINE + 1, 2), (300, 3)],
    ids=["lone", "two", "exactly-128", "129", "300"],
)
async def test_reads_of_one_turn_leave_in_pipelines_of_at_most_128(
    redis_url: str, admin: Redis, count: int, pipelines: int
) -> None:
    assert MAX_PIPELINE == 128
    await seed(admin, count - 1)  # the last key is missing
    # One connection: the pipelines leave one after another, each one socket read for Redis.
    client = await warm(redis_url, max_connections=1)
    try:
        found = pipelined_reads(client)
        assert found is not None
        await admin.config_resetstat()
        answers = await asyncio.gather(*(found.hgetall(key(i)) for i in range(count)))
        assert (await stats(admin))["total_reads_processed"] == pipelines + 1
        assert answers == [stored(i) for i in range(count - 1)] + [{}]
        assert await hgetall_calls(admin) == count
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "names",
    [["plain"], ["h:0", "plain", "h:1", "h:9"], ["plain", "h:0", "plain", "h:1"]],
    ids=["lone", "one-in-four", "two-in-four"],
)
async def test_error_reply_fails_only_its_own_read(
    admin: Redis, client: Redis, reads: PipelinedReads, names: list[str]
) -> None:
    await seed(admin, 2)
    await admin.set("plain", "a string, not a hash")
    await admin.config_resetstat()
    answers = await asyncio.gather(*(reads.hgetall(name) for name in names), return_exceptions=True)
    assert (await stats(admin))["total_reads_processed"] == 2  # all of them in one round trip
    expected: dict[str, dict[bytes, bytes]] = {"h:0": stored(0), "h:1": stored(1), "h:9": {}}
    for name, answer in zip(names, answers, strict=True):
        if name == "plain":
            assert type(answer) is rexc.ResponseError, name
            assert str(answer) == WRONGTYPE
        else:
            assert answer == expected[name], name
    # The error reply left the connection in step: the next reads are answered in order.
    assert await asyncio.gather(reads.hgetall("h:1"), reads.hgetall("h:0")) == [stored(1), stored(0)]
    assert pool_size(client) == 1


async def test_caller_cancelled_before_its_turn_ends_leaves_the_others_alone(
    admin: Redis, client: Redis, reads: PipelinedReads
) -> None:
    await seed(admin, 10)
    await admin.config_resetstat()
    tasks = [asyncio.create_task(reads.hgetall(key(i))) for i in range(10)]
    await asyncio.sleep(0)  # every task has queued its read; the pipeline has not left yet
    tasks[3].cancel()
    answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert tasks[3].cancelled()
    assert type(answers[3]) is asyncio.CancelledError
    assert answers[:3] + answers[4:] == [stored(i) for i in range(10) if i != 3]
    # The read whose caller left before the pipeline did is not sent at all.
    assert await hgetall_calls(admin) == 9
    assert await reads.hgetall(key(3)) == stored(3)
    assert pool_size(client) == 1


@pytest.mark.parametrize(
    ("count", "leaving"),
    [(1, {0}), (5, {2}), (5, {0, 4}), (5, {0, 1, 2, 3, 4})],
    ids=["lone-read", "one-of-five", "two-of-five", "all-five"],
)
async def test_caller_leaving_mid_flight_does_not_cancel_its_pipeline(
    redis_url: str, admin: Redis, count: int, leaving: set[int]
) -> None:
    await seed(admin, count)
    # One connection, so the read after the pipeline reuses its connection: a pipeline cut halfway would leave
    # replies unread there, and redis-py would reconnect (total_connections_received would count it).
    client = await warm(redis_url, max_connections=1)
    try:
        found = pipelined_reads(client)
        assert found is not None
        await admin.config_resetstat()
        await admin.client_pause(PAUSE_MS, all=True)
        calls = [
            asyncio.wait_for(found.hgetall(key(i)), LEAVE_AFTER) if i in leaving else found.hgetall(key(i))
            for i in range(count)
        ]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        for i, answer in enumerate(answers):
            if i in leaving:
                assert type(answer) is TimeoutError, i
            else:
                assert answer == stored(i), i
        # The pipeline still ran to the end on Redis, abandoned reads included, and the connection is clean.
        assert await found.hgetall(key(0)) == stored(0)
        assert await client.hgetall(key(count - 1)) == stored(count - 1)
        assert await hgetall_calls(admin) == count + 2
        assert (await stats(admin))["total_connections_received"] == 0
        assert pool_size(client) == 1
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("count", "times", "fails"),
    [(5, 10, True), (5, 1, False), (1, 2, True), (1, 1, False)],
    ids=["pipeline-retry-dropped-too", "pipeline-retry-succeeds", "lone-retry-dropped-too", "lone-retry-succeeds"],
)
async def test_dropped_connection_fails_every_read_of_the_pipeline(
    admin: Redis, client: Redis, reads: PipelinedReads, count: int, times: int, fails: bool
) -> None:
    await seed(admin, count)
    plan = FaultPlan()
    # The plan counts commands, not writes: one attempt of a pipeline of five uses up five firings, so
    # times=10 drops the first write and the client's one quick retry; times=1 drops only the first write.
    plan.add(Fault(Kind.DROP_BEFORE_SEND, command="HGETALL", times=times))
    undo = inject(client, plan)
    try:
        answers = await asyncio.gather(*(reads.hgetall(key(i)) for i in range(count)), return_exceptions=True)
    finally:
        undo()
    assert plan.log == [("HGETALL", "drop_before_send")] * times
    if fails:
        assert [type(a) for a in answers] == [rexc.ConnectionError] * count
        assert [str(a) for a in answers] == [DROPPED] * count
    else:
        assert answers == [stored(i) for i in range(count)]
    # The pool replaces the dropped connection; the next turn's reads are answered.
    assert await asyncio.gather(*(reads.hgetall(key(i)) for i in range(count))) == [stored(i) for i in range(count)]
    assert pool_size(client) == 1


@pytest.mark.parametrize(
    ("make", "pipelined"),
    [
        (lambda url, port: connect(url), True),
        (lambda url, port: connect(f"redis+sentinel://127.0.0.1:{port}/mymaster"), True),
        (lambda url, port: connect(f"redis+cluster://127.0.0.1:{port}"), False),
        (lambda url, port: connect(f"redis://127.0.0.1:{port}", mode="cluster"), False),
        (lambda url, port: RedisCluster(host="127.0.0.1", port=port), False),
    ],
    ids=["standalone", "sentinel", "cluster-url", "cluster-mode", "plain-redis-cluster"],
)
async def test_pipelined_reads_only_outside_a_cluster(redis_url: str, make: Any, pipelined: bool) -> None:
    # Nothing here connects: every client opens its connections on its first command, and none is sent.
    redis = make(redis_url, free_port())
    try:
        found = pipelined_reads(redis)
        if pipelined:
            assert type(found) is PipelinedReads
        else:
            assert isinstance(redis, RedisCluster)
            assert found is None
    finally:
        await redis.aclose()


async def test_server_gives_each_concurrent_caller_its_own_secret(redis_url: str) -> None:
    async with running_server(redis_url) as stack:
        tokens: list[str] = []
        created: list[pb.UserSecret] = []
        async with stack.stub() as stub:
            for i in range(20):
                _, token = await stack.user(f"user{i}")
                tokens.append(token)
                # The same name for everyone: a read answered to the wrong caller would show in the fields.
                request = pb.CreateUserSecretRequest(
                    user="me",
                    name="api",
                    value=f"value-{i}",
                    description=f"key of user {i}",
                    env_name=f"API_{i}",
                    file_path=f"/home/user{i}/api",
                )
                created.append(await stub.CreateUserSecret(request, metadata=md(token)))
            plan = FaultPlan()
            plan.add(Fault(Kind.DELAY, command="HGETALL", seconds=0.0, times=10_000))  # only to see them
            undo = inject(stack.app.redis, plan)
            try:
                answers = await asyncio.gather(
                    *(
                        stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="api"), metadata=md(t))
                        for t in tokens
                    )
                )
            finally:
                undo()
        for i, (answer, made) in enumerate(zip(answers, created, strict=True)):
            assert answer == made, i
            assert (answer.name, answer.description, answer.env_name, answer.file_path) == (
                "api",
                f"key of user {i}",
                f"API_{i}",
                f"/home/user{i}/api",
            )
        assert len({a.id for a in answers}) == 20
        # One token lookup and one secret read per call, both HGETALLs through the shared pipelined reads.
        assert plan.log == [("HGETALL", "delay")] * 40
