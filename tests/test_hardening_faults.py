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
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis import exceptions as rexc

from tests.support.faults import Fault, FaultPlan, Kind, inject
from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.grpc_helpers import md
from tests.support.stack import ServerStack
from usersecrets.gateway import errors
from usersecrets.server.consistency import check_user
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.server.store import LUA_DIR
from usersecrets.v1 import usersecrets_pb2 as pb

SECRETS = "/api/v2/users/me/secrets"
STORE_DOWN = {"message": "The secrets store is unavailable. Try again later."}
INTERNAL = {"message": "Internal error."}
# Redis names scripts by their SHA-1.
SCRIPTS = ("create", "update", "delete", "list", "get")
SHA = {n: hashlib.sha1((LUA_DIR / f"{n}.lua").read_bytes()).hexdigest() for n in SCRIPTS}  # noqa: S324


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
    # The second HGETALL of a call is the secret's (the first is the token's): a plain read, pipelined.
    Case("update-id-read-dropped-twice", *UPDATE, command("HGETALL", DROP, at=2), 503, STORE_DOWN, K_OLD, True),
    Case("update-busy", *UPDATE, script("update", RAISE, error=busy()), 503, STORE_DOWN, K_OLD, True),
    Case("update-reply-lost-twice-is-whole", *UPDATE, script("update", LOST, 2), 503, STORE_DOWN, K_NEW, True),
    Case("delete-dropped-once-is-retried", *DELETE, script("delete", DROP), 204, None, PRE, True),
    Case("delete-dropped-twice", *DELETE, script("delete", DROP, 2), 503, STORE_DOWN, K_OLD, True),
    # The retry finds the secret gone by its own first attempt: the caller hears 404, and it is gone.
    Case("delete-reply-lost-once", *DELETE, script("delete", LOST), 404, NOT_FOUND, PRE, True),
    Case("delete-reply-lost-twice-is-whole", *DELETE, script("delete", LOST, 2), 503, STORE_DOWN, PRE, True),
    Case("list-dropped-twice", "GET", SECRETS, None, script("list", DROP, 2), 503, STORE_DOWN, K_OLD, True),
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
    # A deadline of 1 s (not less: on a busy machine a shorter one can pass before the write is even issued,
    # and this test is about a write held up after it was issued) and a delay well past it.
    rig.plan.add(Fault(Kind.DELAY, command="EVALSHA", sha=SHA["create"], seconds=2.0))
    reply = await call(
        rig.gw.http,
        "POST",
        SECRETS,
        token=rig.token,
        body={"name": "k", "value": "v"},
        headers={"Grpc-Timeout": "1S"},
    )
    assert (reply.status, reply.json) == (504, {"message": errors.DEADLINE_EXCEEDED})
    # The server gave up with the caller: the delayed command is never sent, so it can never land later.
    assert await eventually(lambda: server_in_flight(rig.gw.server), lambda n: n == 0) == 0
    await asyncio.sleep(1.5)  # past the end of the delay: a command still on its way would have landed by now
    assert rig.plan.log == [("EVALSHA", "delay")]
    assert await rig.values() == PRE
    assert await check_user(rig.gw.server.redis, rig.user_id) == []
