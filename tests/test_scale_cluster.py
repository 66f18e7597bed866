"""The contract on a real Redis Cluster of 3 masters and 3 replicas (issue 7).

The first half re-runs every test of the gRPC and REST contract modules unchanged: they are the same function
objects as in their own modules, and this module's `redis_url` fixture points them (through conftest's
`server_stack`) at the flushed cluster. The second half checks what only a cluster has: one slot per user,
the index checker and admin commands across every master, WAIT on a shard, and a slot migration under load.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests import test_gateway_rest as rest
from tests import test_gateway_rest_auth as rest_auth
from tests import test_grpc_authz as authz
from tests import test_grpc_errors as grpc_errors
from tests import test_grpc_patch as grpc_patch
from tests import test_grpc_races as races
from tests import test_grpc_validation as grpc_validation
from tests import test_grpc_values as values
from tests.support.cluster import LocalCluster
from tests.support.gateway_stack import call, gateway_in_front_of
from tests.support.grpc_helpers import fails, md
from tests.support.stack import ServerStack, running_server
from usersecrets.sdk.devrun import _username_taken
from usersecrets.server import keys
from usersecrets.server.admin import build_parser, run_admin
from usersecrets.server.consistency import check_all
from usersecrets.server.identity import IdentityStore
from usersecrets.server.redis_client import connect
from usersecrets.v1 import usersecrets_pb2 as pb

pytestmark = pytest.mark.slow

# ---- the contract tests, re-run on the cluster -------------------------------------------------------------

gateway = rest.gateway  # the REST tests' own fixture, over this module's server_stack

# Every test of the contract modules, re-run here as the same function objects (marks and parameters too).
CONTRACT_MODULES = (rest, rest_auth, grpc_validation, grpc_errors, grpc_patch, authz, values, races)
for _module in CONTRACT_MODULES:
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test):
            globals()[f"test_{_module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}__{_name[5:]}"] = _test


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(local_cluster: LocalCluster) -> str:
    """Overrides conftest's: every server_stack of this module runs on the flushed cluster."""
    local_cluster.flush()
    return local_cluster.url


# ---- what only a cluster has -------------------------------------------------------------------------------


def test_redis_url_is_a_cluster(redis_url: str) -> None:
    assert re.fullmatch(r"redis\+cluster://127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2}/", redis_url)


async def _users_on_every_master(stack: ServerStack, cluster: LocalCluster) -> dict[int, tuple[str, str]]:
    """One user (id, token) per master port: user ids are random, so make users until each master has one."""
    found: dict[int, tuple[str, str]] = {}
    for i in range(60):
        user, token = await stack.user(f"u{i}")
        port = cluster.master_of(stack.redis.keyslot(keys.user(user.id))).port
        found.setdefault(port, (user.id, token))
        if len(found) == cluster.masters:
            return found
    raise AssertionError(f"users landed on {len(found)} masters only")


async def test_every_key_of_a_user_shares_the_users_slot(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("alice")
    names = ["plain", "{brace}", "}x{", "a{b}c", "é {", "x" * 256]
    async with server_stack.stub() as stub:
        for i, name in enumerate(names):
            request = pb.CreateUserSecretRequest(user="me", name=name, value="v", env_name=f"E{i}", file_path=f"~/f{i}")
            await stub.CreateUserSecret(request, metadata=md(token))
    user_keys = [k async for k in server_stack.redis.scan_iter(match=f"us:*{user.id}*")]
    expected = {keys.user(user.id), keys.names(user.id), keys.env_index(user.id), keys.file_index(user.id)}
    expected |= {keys.usage(user.id)} | {keys.secret(user.id, n) for n in names}
    assert {k.decode() for k in user_keys} == expected
    slots = {server_stack.redis.keyslot(k) for k in user_keys}
    assert slots == {server_stack.redis.keyslot("{" + user.id + "}")}, slots


async def test_index_checker_scans_every_master(server_stack: ServerStack, local_cluster: LocalCluster) -> None:
    owners = await _users_on_every_master(server_stack, local_cluster)
    async with server_stack.stub() as stub:
        for _, token in owners.values():
            request = pb.CreateUserSecretRequest(user="me", name="s", value="v", env_name="E")
            await stub.CreateUserSecret(request, metadata=md(token))
    assert await check_all(server_stack.redis) == []
    # A broken index on each master is found: SCAN ran on all three.
    for user_id, _ in owners.values():
        await server_stack.redis.hset(keys.env_index(user_id), "STRAY", "nobody")
    stray = "env index entry 'STRAY' -> 'nobody' points to a missing secret"
    assert sorted(await check_all(server_stack.redis)) == sorted(f"user {uid}: {stray}" for uid, _ in owners.values())


@pytest.mark.parametrize("url_form", ["cluster-url", "mode-flag"])
async def test_admin_commands_on_the_cluster(
    server_stack: ServerStack, local_cluster: LocalCluster, capsys: pytest.CaptureFixture[str], url_form: str
) -> None:
    seed = local_cluster.nodes[0].port
    if url_form == "cluster-url":
        target = ["--redis-url", local_cluster.url]
    else:
        target = ["--redis-url", f"redis://127.0.0.1:{seed}/0", "--redis-mode", "cluster"]
    keys_flag = ["--encryption-keys", server_stack.key_spec]

    assert await run_admin(build_parser().parse_args([*target, "create-user", "--username", "carol"])) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["username"], created["roles"]) == ("carol", [])
    assert await run_admin(build_parser().parse_args([*target, "create-token", "--user", "carol"])) == 0
    token = capsys.readouterr().out.strip()
    async with gateway_in_front_of(server_stack) as gw:
        made = await call(gw.http, "POST", "/api/v2/users/carol/secrets", token=token, body={"name": "k", "value": "v"})
        assert made.status == 201, made
        assert await run_admin(build_parser().parse_args([*target, *keys_flag, "rotate-keys"])) == 0
        assert json.loads(capsys.readouterr().out) == {"rotated": 0, "skipped": 1, "failed": 0}
        listed = await call(gw.http, "GET", "/api/v2/users/me/secrets", token=token)
        assert (listed.status, listed.json) == (200, [made.json])


async def test_wait_for_the_shards_replica_and_for_more_than_it_has(local_cluster: LocalCluster) -> None:
    local_cluster.flush()
    async with running_server(local_cluster.url, redis_wait_replicas=1, redis_wait_timeout_ms=2000) as stack:
        user, token = await stack.user("alice")
        async with stack.stub() as stub:
            await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="a", value="v"), metadata=md(token))
            patch = pb.UpdateUserSecretRequest(user="me", name="a", description="d")
            assert (await stub.UpdateUserSecret(patch, metadata=md(token))).description == "d"
            await stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name="a"), metadata=md(token))
    async with running_server(local_cluster.url, redis_wait_replicas=2, redis_wait_timeout_ms=200) as stack:
        async with stack.stub() as stub:
            failure = await fails(
                stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="b", value="v"), metadata=md(token))
            )
        assert (failure.code, failure.message) == (
            grpc.StatusCode.UNAVAILABLE,
            "The secrets store is unavailable. Try again later.",
        )
        assert failure.detail == "1 of 2 replicas acknowledged the write within 200 ms", failure
        # The master applied it (WAIT cannot undo a write): the caller was told "unavailable", not "done".
        assert await stack.redis.exists(keys.secret(user.id, "b")) == 1


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
async def test_slot_migration_under_load_reaches_no_caller(local_cluster: LocalCluster, wait_replicas: int) -> None:
    local_cluster.flush()
    # The load is as fast as the stack goes: the rate limiter (tested on its own) must not be what answers.
    overrides = {"redis_wait_replicas": wait_replicas, "redis_wait_timeout_ms": 2000, "rate_limit_per_second": 0}
    async with running_server(local_cluster.url, **overrides) as stack:
        user, token = await stack.user("mover")
        slot = stack.redis.keyslot(keys.user(user.id))
        source = local_cluster.master_of(slot)
        target = next(m for m in local_cluster.masters_now() if m.port != source.port)
        outcomes: Counter[str] = Counter()
        kept: set[str] = set()
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            async with stack.stub() as stub:
                i = 0
                while not stop.is_set() or i < 10:
                    name = f"w{w}-{i}"
                    request = pb.CreateUserSecretRequest(user="me", name=name, value="v", env_name=f"E_{w}_{i}")
                    try:
                        await stub.CreateUserSecret(request, metadata=md(token))
                        await stub.UpdateUserSecret(
                            pb.UpdateUserSecretRequest(user="me", name=name, value="v2"), metadata=md(token)
                        )
                        if i >= 5:  # the rest is deleted, or the 50-secret limit would end the load
                            delete = pb.DeleteUserSecretRequest(user="me", name=name)
                            await stub.DeleteUserSecret(delete, metadata=md(token))
                        else:
                            kept.add(name)
                        outcomes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        outcomes[exc.code().name] += 1
                    i += 1

        writers = [asyncio.create_task(writer(w)) for w in range(3)]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(local_cluster.migrate_slot, slot, target, 2, 0.01)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*writers)

        assert local_cluster.master_of(slot).port == target.port
        assert set(outcomes) == {"OK"}, outcomes
        async with stack.stub() as stub:
            listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        assert [s.name for s in listed.secrets] == sorted(kept, key=str.encode)
        assert all(s.env_name for s in listed.secrets)
        assert await check_all(stack.redis) == []


async def test_reads_during_a_slot_migration_reach_no_caller(local_cluster: LocalCluster) -> None:
    local_cluster.flush()
    async with running_server(local_cluster.url, rate_limit_per_second=0) as stack:
        user, token = await stack.user("reader")
        async with stack.stub() as stub:
            for i in range(10):
                request = pb.CreateUserSecretRequest(user="me", name=f"s{i}", value="v")
                await stub.CreateUserSecret(request, metadata=md(token))
        slot = stack.redis.keyslot(keys.user(user.id))
        target = next(m for m in local_cluster.masters_now() if m.port != local_cluster.master_of(slot).port)
        outcomes: Counter[str] = Counter()
        stop = asyncio.Event()

        async def reader() -> None:
            async with stack.stub() as stub:
                while not stop.is_set():
                    try:
                        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
                        assert len(listed.secrets) == 10
                        for i in range(0, 10, 3):
                            got = await stub.GetUserSecret(
                                pb.GetUserSecretRequest(user="me", name=f"s{i}"), metadata=md(token)
                            )
                            assert got.name == f"s{i}"
                        outcomes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        outcomes[exc.code().name] += 1

        readers = [asyncio.create_task(reader()) for _ in range(6)]
        await asyncio.sleep(0.2)
        # One key at a time with pauses: the slot stays MIGRATING long enough for reads to meet ASK.
        await asyncio.to_thread(local_cluster.migrate_slot, slot, target, 1, 0.02)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*readers)
        assert local_cluster.master_of(slot).port == target.port
        assert set(outcomes) == {"OK"}, outcomes


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-wait", "wait-1"])
async def test_writes_to_a_half_moved_slot_wait_for_the_move(local_cluster: LocalCluster, wait_replicas: int) -> None:
    local_cluster.flush()
    # The load is as fast as the stack goes: the rate limiter (tested on its own) must not be what answers.
    overrides = {"redis_wait_replicas": wait_replicas, "redis_wait_timeout_ms": 2000, "rate_limit_per_second": 0}
    async with running_server(local_cluster.url, **overrides) as stack, stack.stub() as stub:
        user, token = await stack.user("mover")
        await stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="old", value="v"), metadata=md(token))
        slot = stack.redis.keyslot(keys.user(user.id))
        source = local_cluster.master_of(slot)
        target = next(m for m in local_cluster.masters_now() if m.port != source.port)
        # Every key has moved but the slot is still MIGRATING: the source answers ASK, and the target TRYAGAIN
        # (a script's keys that exist nowhere yet count as missing) until the move is finished.
        await asyncio.to_thread(local_cluster.migrate_slot, slot, target, 100, 0.0, False)
        update = pb.UpdateUserSecretRequest(user="me", name="old", description="moved")
        create = pb.CreateUserSecretRequest(user="me", name="new", value="v")
        writes = asyncio.gather(
            stub.UpdateUserSecret(update, metadata=md(token)), stub.CreateUserSecret(create, metadata=md(token))
        )
        # redis-py retries TRYAGAIN for about 0.15 s: a user's slot holds few keys and moves much faster.
        await asyncio.sleep(0.03)
        await asyncio.to_thread(local_cluster.finish_migration, slot, source, target)
        updated, created = await writes
        assert (updated.description, created.name) == ("moved", "new")
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        assert [(s.name, s.description) for s in listed.secrets] == [("new", ""), ("old", "moved")]
        assert local_cluster.master_of(slot).port == target.port
        assert await check_all(stack.redis) == []


async def test_make_run_finds_its_user_on_a_cluster(local_cluster: LocalCluster) -> None:
    """`make run` over a `redis+cluster://` URL checks for its first user through the server's own client."""
    local_cluster.flush()
    assert await _username_taken(local_cluster.url, "devuser") is False
    client = connect(local_cluster.url)
    try:
        await IdentityStore(client).create_user("devuser")
    finally:
        await client.aclose()
    assert await _username_taken(local_cluster.url, "devuser") is True
