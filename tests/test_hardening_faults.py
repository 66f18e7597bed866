"""Issue 5, item 1: storage faults. Injected (tests/support/faults.py) and real (Redis killed, Redis paused).

What a fault may do to a write, and what these tests hold the service to:
- a fault before the command reaches Redis leaves nothing behind, and one such fault is absorbed by the
  client's one quick retry;
- a reply lost after Redis ran the command is answered as if it had arrived (the retry sees its own write);
- when the outcome cannot be known (503 after the command was sent), the write is all or nothing, never
  partial, and the index checker finds no inconsistency;
- a definite answer (2xx, 4xx) is always the truth; no fault ever turns into a 500 unless Redis itself said
  something the service cannot understand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc

from tests.support.faults import Fault, FaultPlan, Kind, inject
from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.grpc_helpers import md, user_state
from tests.support.redis_proc import RedisProcess
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway import errors
from usersecrets.server.consistency import check_all, check_user
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.server.store import LUA_DIR
from usersecrets.v1 import usersecrets_pb2 as pb

SECRETS = "/api/v2/users/me/secrets"
STORE_DOWN = {"message": "The secrets store is unavailable. Try again later."}
INTERNAL = {"message": "Internal error."}
# Redis names scripts by their SHA-1.
SHA = {n: hashlib.sha1((LUA_DIR / f"{n}.lua").read_bytes()).hexdigest() for n in ("create", "update", "delete", "list")}  # noqa: S324


async def eventually(fetch: Callable[[], Any], done: Callable[[Any], bool], tries: int = 200) -> Any:
    """Poll until `done(result)`; the bound is a number of tries, so a broken recovery fails, not hangs."""
    for _ in range(tries):
        result = fetch()
        if inspect.isawaitable(result):
            result = await result
        if done(result):
            return result
        await asyncio.sleep(0.05)
    return result


def server_in_flight(server: ServerStack) -> float | None:
    return server.app.metrics.registry.get_sample_value("usersecrets_grpc_in_flight")


async def values_of(server: ServerStack, service_token: str, user: str) -> dict[str, tuple[str, str, str, str]]:
    """name -> (value, description, env_name, file_path), read as a workspace builder reads them."""
    async with server.stub() as stub:
        answer = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), metadata=md(service_token))
    return {
        v.secret.name: (v.value, v.secret.description, v.secret.env_name, v.secret.file_path) for v in answer.values
    }


# ---- injected faults, one request at a time ------------------------------------------------------------


@dataclasses.dataclass
class Rig:
    gw: GatewayStack
    plan: FaultPlan
    user_id: str
    token: str
    service: str

    async def values(self) -> dict[str, tuple[str, str, str, str]]:
        return await values_of(self.gw.server, self.service, self.user_id)


@pytest.fixture
async def rig(server_stack: ServerStack) -> AsyncIterator[Rig]:
    async with gateway_in_front_of(server_stack) as gw:
        user, token = await gw.user("alice")
        _, service = await gw.user("injector", roles=(SERVICE_ROLE,))
        # Scripts loaded up front: a first EVALSHA answered NOSCRIPT would shift every step count below.
        for name in SHA:
            await server_stack.redis.script_load((LUA_DIR / f"{name}.lua").read_bytes())
        created = await call(gw.http, "POST", SECRETS, token=token, body={"name": "pre", "value": "pre-v"})
        assert created.status == 201
        plan = FaultPlan()
        undo = inject(server_stack.app.redis, plan)
        try:
            yield Rig(gw, plan, user.id, token, service)
        finally:
            undo()


def busy() -> Exception:
    return rexc.ResponseError("BUSY Redis is busy running a script.", status_code="BUSY")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: dict[str, str] | None
    faults: tuple[Fault, ...]
    status: int
    # None: the reply body is checked by status alone (a secret's JSON); else the exact error body.
    error: dict[str, str] | None
    # The stored secrets afterwards: name -> (value, description, env_name, file_path).
    after: dict[str, tuple[str, str, str, str]]
    k_exists: bool = False  # "k" is created (value "old") before the faults are armed


PRE = {"pre": ("pre-v", "", "", "")}
K_OLD = {**PRE, "k": ("old", "", "K_ENV", "")}
K_NEW = {**PRE, "k": ("new", "", "K_ENV", "")}
CREATE = ("POST", SECRETS, {"name": "k", "value": "new", "env_name": "K_ENV"})
UPDATE = ("PATCH", f"{SECRETS}/k", {"value": "new"})
DELETE = ("DELETE", f"{SECRETS}/k", None)


def script(name: str, kind: Kind, times: int = 1, error: Exception | None = None) -> tuple[Fault, ...]:
    return (Fault(kind, command="EVALSHA", sha=SHA[name], times=times, error=error),)


def command(name: str, kind: Kind, at: int = 1, times: int = 2) -> tuple[Fault, ...]:
    return (Fault(kind, command=name, at=at, times=times),)


DROP, LOST, SLOW, RAISE = Kind.DROP_BEFORE_SEND, Kind.DROP_AFTER_SEND, Kind.TIMEOUT_AFTER_SEND, Kind.RAISE
NOT_FOUND = {"message": "Resource not found or you do not have access to this resource"}
OOM = rexc.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
READONLY = rexc.ReadOnlyError("READONLY You can't write against a read only replica.")

CASES = [
    # Creates ("k" does not exist before).
    Case("create-dropped-once-is-retried", *CREATE, script("create", DROP), 201, None, K_NEW),
    Case("create-dropped-twice", *CREATE, script("create", DROP, 2), 503, STORE_DOWN, PRE),
    Case("create-reply-lost-once", *CREATE, script("create", LOST), 201, None, K_NEW),
    Case("create-reply-timeout-once", *CREATE, script("create", SLOW), 201, None, K_NEW),
    # Both attempts reached Redis and both replies were lost: unknown to the caller, whole in the store.
    Case("create-reply-lost-twice-is-whole", *CREATE, script("create", LOST, 2), 503, STORE_DOWN, K_NEW),
    Case("create-busy", *CREATE, script("create", RAISE, error=busy()), 503, STORE_DOWN, PRE),
    Case("create-oom", *CREATE, script("create", RAISE, error=OOM), 503, STORE_DOWN, PRE),
    Case("create-readonly-replica", *CREATE, script("create", RAISE, error=READONLY), 503, STORE_DOWN, PRE),
    Case(
        "create-unknown-redis-error",
        *CREATE,
        script("create", RAISE, error=rexc.ResponseError("ERR odd")),
        500,
        INTERNAL,
        PRE,
    ),
    Case("auth-lookup-dropped-twice", *CREATE, command("HGETALL", DROP), 503, STORE_DOWN, PRE),
    Case("auth-lookup-timeout-twice", *CREATE, command("HGETALL", SLOW), 503, STORE_DOWN, PRE),
    # Updates, deletes and reads ("k" exists with value "old" before).
    Case("update-reply-lost-once", *UPDATE, script("update", LOST), 200, None, K_NEW, True),
    Case("update-dropped-twice", *UPDATE, script("update", DROP, 2), 503, STORE_DOWN, K_OLD, True),
    Case("update-id-read-dropped-twice", *UPDATE, command("HGET", DROP), 503, STORE_DOWN, K_OLD, True),
    Case("update-busy", *UPDATE, script("update", RAISE, error=busy()), 503, STORE_DOWN, K_OLD, True),
    Case("update-reply-lost-twice-is-whole", *UPDATE, script("update", LOST, 2), 503, STORE_DOWN, K_NEW, True),
    Case("delete-dropped-once-is-retried", *DELETE, script("delete", DROP), 204, None, PRE, True),
    Case("delete-dropped-twice", *DELETE, script("delete", DROP, 2), 503, STORE_DOWN, K_OLD, True),
    # The retry finds the secret gone by its own first attempt: the caller hears 404, and it is gone.
    Case("delete-reply-lost-once", *DELETE, script("delete", LOST), 404, NOT_FOUND, PRE, True),
    Case("delete-reply-lost-twice-is-whole", *DELETE, script("delete", LOST, 2), 503, STORE_DOWN, PRE, True),
    Case("list-dropped-twice", "GET", SECRETS, None, script("list", DROP, 2), 503, STORE_DOWN, K_OLD, True),
    # The first HGETALL is the token lookup; the second is the secret.
    Case(
        "get-dropped-twice", "GET", f"{SECRETS}/k", None, command("HGETALL", DROP, at=2), 503, STORE_DOWN, K_OLD, True
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_injected_fault(rig: Rig, case: Case) -> None:
    if case.k_exists:
        rig.plan.enabled = False
        body = {"name": "k", "value": "old", "env_name": "K_ENV"}
        assert (await call(rig.gw.http, "POST", SECRETS, token=rig.token, body=body)).status == 201
        rig.plan.enabled = True
    for fault in case.faults:
        rig.plan.add(dataclasses.replace(fault))  # a fresh counter per test
    reply = await call(rig.gw.http, case.method, case.path, token=rig.token, body=case.body)
    fired = sum(f.fired for f in rig.plan.faults)
    rig.plan.clear()
    assert fired == sum(f.times for f in case.faults), f"{case.id}: the faults did not all fire: {rig.plan.log}"
    assert reply.status == case.status, (case.id, reply)
    if case.error is not None:
        assert reply.json == case.error, case.id
    assert await rig.values() == case.after, case.id
    assert await check_user(rig.gw.server.redis, rig.user_id) == [], case.id
    # The store serves normally again at once: nothing was left stuck or half-open.
    assert (await call(rig.gw.http, "GET", SECRETS, token=rig.token)).status == 200
    assert server_in_flight(rig.gw.server) == 0


async def test_slow_redis_past_the_deadline_is_504_and_writes_nothing(rig: Rig) -> None:
    rig.plan.add(Fault(Kind.DELAY, command="EVALSHA", sha=SHA["create"], seconds=0.6))
    reply = await call(
        rig.gw.http,
        "POST",
        SECRETS,
        token=rig.token,
        body={"name": "k", "value": "v"},
        headers={"Grpc-Timeout": "200m"},
    )
    assert (reply.status, reply.json) == (504, {"message": errors.DEADLINE_EXCEEDED})
    # The server gave up with the caller: the delayed command is never sent, so it can never land later.
    assert await eventually(lambda: server_in_flight(rig.gw.server), lambda n: n == 0) == 0
    await asyncio.sleep(0.6)
    assert rig.plan.log == [("EVALSHA", "delay")]
    assert await rig.values() == PRE
    assert await check_user(rig.gw.server.redis, rig.user_id) == []


# ---- real Redis: paused, killed ------------------------------------------------------------------------


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis", appendonly=True)  # appendfsync always: an acknowledged write is on disk
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def gauge(gw: GatewayStack, name: str) -> float:
    text = (await call(gw.http, "GET", "/metrics")).raw.decode()
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def test_paused_redis_write_past_the_deadline_is_504_with_nothing_stuck(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack) as gw:
        user, token = await gw.user("alice")
        pauser = aioredis.from_url(server_stack.redis_url)
        try:
            # The pause ends by itself: an UNPAUSE would wait behind it.
            await pauser.execute_command("CLIENT", "PAUSE", "700", "WRITE")
            replies = await asyncio.gather(
                *(
                    call(
                        gw.http,
                        "POST",
                        SECRETS,
                        token=token,
                        body={"name": f"k{i}", "value": "v"},
                        headers={"Grpc-Timeout": "200m"},
                    )
                    for i in range(5)
                )
            )
        finally:
            await pauser.aclose()
        assert [(r.status, r.json) for r in replies] == [(504, {"message": errors.DEADLINE_EXCEEDED})] * 5
        assert await eventually(lambda: server_in_flight(server_stack), lambda n: n == 0) == 0
        assert await gauge(gw, "usersecrets_gateway_requests_in_flight") == 1.0  # the /metrics request itself
        # A write of our own returns only once the pause is over; by then the abandoned writes would have run.
        await server_stack.redis.set("pause-probe", "1")
        await server_stack.redis.delete("pause-probe")
        # They never do: they were dropped with their connections when the server gave up on them.
        listed = await call(gw.http, "GET", SECRETS, token=token)
        assert (listed.status, listed.raw) == (200, b"[]")
        assert await user_state(server_stack.redis, user.id) == {}


@dataclasses.dataclass(frozen=True)
class Op:
    kind: str  # create | update | delete
    name: str
    value: str = ""
    description: str = ""


Row = tuple[str, str, str, str]  # value, description, env_name, file_path


@dataclasses.dataclass
class Worker:
    """One client with its own names (so the model of its secrets is sequential) and a model of them."""

    index: int
    rng: random.Random
    model: dict[str, Row] = dataclasses.field(default_factory=dict)
    acknowledged: int = 0
    unknown: Op | None = None  # the request answered 503: it may or may not have happened
    counter: int = 0

    def names(self) -> list[str]:
        return [f"w{self.index}-{i}" for i in range(4)]

    def next_op(self) -> Op:
        self.counter += 1
        name = self.rng.choice(self.names())
        kind = self.rng.choice(["create", "create", "update", "delete"])
        return Op(kind, name, f"value-{self.index}-{self.counter}", f"d{self.counter}")

    def expected(self, op: Op) -> tuple[int, dict[str, Row]]:
        model = dict(self.model)
        if op.kind == "create":
            if op.name in model:
                return 409, model
            model[op.name] = (op.value, "", f"ENV_{op.name.replace('-', '_')}", f"/w/{op.name}")
            return 201, model
        if op.name not in model:
            return 404, model
        if op.kind == "delete":
            del model[op.name]
            return 204, model
        _, _, env, path = model[op.name]
        model[op.name] = (op.value, op.description, env, path)
        return 200, model

    def request(self, op: Op) -> tuple[str, str, dict[str, str] | None]:
        if op.kind == "create":
            body = {
                "name": op.name,
                "value": op.value,
                "env_name": f"ENV_{op.name.replace('-', '_')}",
                "file_path": f"/w/{op.name}",
            }
            return "POST", SECRETS, body
        if op.kind == "update":
            return "PATCH", f"{SECRETS}/{op.name}", {"value": op.value, "description": op.description}
        return "DELETE", f"{SECRETS}/{op.name}", None

    async def run(self, http: aiohttp.ClientSession, token: str) -> None:
        """Until the first 503; every other answer must be exactly what the model says."""
        while True:
            op = self.next_op()
            method, path, body = self.request(op)
            reply = await call(http, method, path, token=token, body=body)
            if reply.status == 503:
                assert reply.json == STORE_DOWN, reply
                self.unknown = op
                return
            status, model = self.expected(op)
            assert reply.status == status, (op, reply, self.model)
            if status in (200, 201):
                got = reply.json
                assert (got["name"], got["description"], got["env_name"], got["file_path"]) == (
                    op.name,
                    *model[op.name][1:],
                )
            self.model = model
            self.acknowledged += 1


async def test_redis_killed_under_load_loses_no_acknowledged_write(own_redis: RedisProcess) -> None:
    async with (
        running_server(own_redis.url) as server,
        gateway_in_front_of(server) as gw,
        aiohttp.ClientSession(gw.url, timeout=aiohttp.ClientTimeout(total=15)) as http,  # a hang fails the test
    ):
        user, token = await gw.user("alice")
        _, service = await gw.user("injector", roles=(SERVICE_ROLE,))
        workers = [Worker(i, random.Random(i)) for i in range(8)]
        tasks = [asyncio.create_task(w.run(http, token)) for w in workers]
        try:
            await eventually(lambda: sum(w.acknowledged for w in workers), lambda n: n >= 80, tries=400)
            own_redis.kill()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        assert all(w.unknown is not None for w in workers)
        assert sum(w.acknowledged for w in workers) >= 80

        # While Redis is down: 503 with the contract's body for reads and writes; health says so too.
        for method, path, body in [("GET", SECRETS, None), ("POST", SECRETS, {"name": "late", "value": "v"})]:
            reply = await call(http, method, path, token=token, body=body)
            assert (reply.status, reply.json) == (503, STORE_DOWN), method
        health = await eventually(lambda: call(http, "GET", "/healthz"), lambda r: r.status == 503)
        assert (health.status, json.loads(health.raw)["status"]) == (503, "NOT_SERVING")

        own_redis.start()  # same port, same directory: it replays its append-only file
        listed = await eventually(lambda: call(http, "GET", SECRETS, token=token), lambda r: r.status == 200)
        assert listed.status == 200, listed
        assert (await eventually(lambda: call(http, "GET", "/healthz"), lambda r: r.status == 200)).status == 200

        stored = await values_of(server, service, user.id)
        for w in workers:
            mine = {n: row for n, row in stored.items() if n.startswith(f"w{w.index}-")}
            assert w.unknown is not None
            _, if_it_landed = w.expected(w.unknown)
            assert mine in (w.model, if_it_landed), (w.index, w.unknown, mine, w.model)
        assert "late" not in stored
        assert [s["name"] for s in json.loads(listed.raw)] == sorted(stored)
        assert await check_all(server.redis) == []
