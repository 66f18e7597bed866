"""Issue 5, item 1, real faults: Redis paused past a deadline, and Redis killed under a load of mixed writes
then restarted from its append-only file. Injected faults are in tests/test_hardening_faults.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random

import aiohttp
import redis.asyncio as aioredis

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.grpc_helpers import user_state
from tests.support.redis_proc import RedisProcess
from tests.support.stack import ServerStack, running_server
from tests.test_hardening_faults import SECRETS, STORE_DOWN, eventually, server_in_flight, values_of
from usersecrets.gateway import errors
from usersecrets.server.consistency import check_all
from usersecrets.server.model import SERVICE_ROLE

# ---- real Redis: paused, killed ------------------------------------------------------------------------


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
