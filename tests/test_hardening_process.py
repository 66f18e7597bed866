"""Issue 5, item 2: process faults, with the real entry points as child processes.

- The gRPC server SIGKILLed under REST load and started again on its port: the gateway answers 503 (never
  500, never a hang) and then serves again by itself; no acknowledged write is lost.
- SIGTERM to the server, and to the gateway, while requests are in flight: those requests complete, new ones
  are refused, the process exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from tests.support.gateway_stack import Reply, call, running_gateway
from tests.support.processes import as_json_lines, gateway_process, metric, server_process, until
from tests.support.redis_proc import RedisProcess, free_port
from usersecrets.gateway import errors
from usersecrets.server.consistency import check_all
from usersecrets.server.crypto import generate_key_spec
from usersecrets.server.identity import IdentityStore

SECRETS = "/api/v2/users/me/secrets"
SERVICE_DOWN = {"message": errors.UNAVAILABLE}


async def new_token(redis_url: str, username: str) -> str:
    client = aioredis.from_url(redis_url)
    try:
        identity = IdentityStore(client)
        user = await identity.create_user(username)
        return (await identity.create_token(user.id, 600))[1]
    finally:
        await client.aclose()


async def stored_names(redis_url: str) -> set[str]:
    client = aioredis.from_url(redis_url)
    try:
        assert await check_all(client) == []
        return {key.decode().rsplit(":secret:", 1)[1] async for key in client.scan_iter(match="us:{*}:secret:*")}
    finally:
        await client.aclose()


@dataclasses.dataclass
class Load:
    """Clients (one user each) creating secrets with fresh names until told to stop; every answer is kept.

    Each client paces itself under the default rate limit and stays under the 50-secret limit of its user.
    """

    http: aiohttp.ClientSession
    tokens: list[str]
    replies: list[tuple[str, Reply]] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def client(self, index: int) -> None:
        n = created = 0
        while not self.stop.is_set() and created < 45:
            n += 1
            name = f"c{index}-{n}"
            body = {"name": name, "value": f"v-{name}"}
            reply = await call(self.http, "POST", SECRETS, token=self.tokens[index], body=body)
            self.replies.append((name, reply))
            created += reply.status == 201
            await asyncio.sleep(0.01)

    def count(self, status: int) -> int:
        return sum(1 for _, r in self.replies if r.status == status)


async def test_server_killed_under_load_is_503_then_recovers_without_a_gateway_restart(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    key_spec = generate_key_spec()
    tokens = [await new_token(own_redis.url, f"user{i}") for i in range(6)]
    async with (
        running_gateway(listen) as gateway,
        aiohttp.ClientSession(gateway.url, timeout=aiohttp.ClientTimeout(total=15)) as http,  # a hang fails
    ):
        load = Load(http, tokens)
        async with server_process(tmp_path, listen, own_redis.url, key_spec) as first:
            clients = [asyncio.create_task(load.client(i)) for i in range(6)]
            try:
                await until(lambda: load.count(201) >= 30, "30 creates before the kill")
                first.kill()  # SIGKILL: no drain, connections cut mid-call
                await until(lambda: load.count(503) >= 12, "503s while the server is down")
                health = await call(http, "GET", "/healthz")
                assert (health.status, health.json["status"]) == (503, "UNREACHABLE")
                before_restart = len(load.replies)
                async with server_process(tmp_path, listen, own_redis.url, key_spec):
                    # The same gateway and its one channel: it reconnects by itself.
                    await until(
                        lambda: sum(1 for _, r in load.replies[before_restart:] if r.status == 201) >= 30,
                        "creates again after the restart",
                    )
                    load.stop.set()
                    await asyncio.gather(*clients)
                    assert (await call(http, "GET", "/healthz")).status == 200
                    listed = [await call(http, "GET", SECRETS, token=token) for token in tokens]
            finally:
                load.stop.set()
                for task in clients:
                    task.cancel()

    statuses = Counter(r.status for _, r in load.replies)
    assert set(statuses) == {201, 503}, statuses  # never a 500, never a 4xx for a fresh name
    assert all(r.json == SERVICE_DOWN for _, r in load.replies if r.status == 503)
    acknowledged = {name for name, r in load.replies if r.status == 201}
    unknown = {name for name, r in load.replies if r.status == 503}  # cut mid-call, or never reached the server
    stored = await stored_names(own_redis.url)
    assert acknowledged <= stored
    assert stored <= acknowledged | unknown
    assert [r.status for r in listed] == [200] * 6
    assert {s["name"] for r in listed for s in r.json} == stored


async def eight_creates_held(
    pauser: aioredis.Redis, http: aiohttp.ClientSession, token: str, metrics: str
) -> list[asyncio.Task[Reply]]:
    """Pauses Redis's writes (reads and UNPAUSE still pass), sends 8 creates through the gateway and returns once
    all 8 are in flight on the server, waiting on Redis."""
    await pauser.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
    in_flight = [
        asyncio.create_task(call(http, "POST", SECRETS, token=token, body={"name": f"k{i}", "value": "v"}))
        for i in range(8)
    ]

    async def all_in_flight() -> bool:
        return await metric(f"http://{metrics}/metrics", "usersecrets_grpc_in_flight") == 8.0

    await until(all_in_flight, "8 calls in flight on the server")
    return in_flight


async def test_server_sigterm_under_load_finishes_in_flight_refuses_new_and_exits_0(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    listen, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    token = await new_token(own_redis.url, "alice")
    pauser = aioredis.from_url(own_redis.url)
    async with (
        server_process(
            tmp_path, listen, own_redis.url, generate_key_spec(), USERSECRETS_METRICS_LISTEN=metrics,
            USERSECRETS_SHUTDOWN_GRACE="10",
        ) as server,
        running_gateway(listen) as gateway,
        aiohttp.ClientSession(gateway.url, timeout=aiohttp.ClientTimeout(total=15)) as http,
    ):  # fmt: skip
        try:
            # Writes wait in Redis (reads and UNPAUSE do not), so these creates are in flight on the server.
            in_flight = await eight_creates_held(pauser, http, token, metrics)
            server.signal(signal.SIGTERM)
            await until(lambda: "draining" in server.messages(), "the server draining")
            refused = [
                await call(http, "POST", SECRETS, token=token, body={"name": "late", "value": "v"}),
                await call(http, "GET", SECRETS, token=token),
            ]
            await asyncio.sleep(0.5)  # well into the drain: a short grace would have cut these calls by now
            assert not any(task.done() for task in in_flight)
        finally:
            await pauser.execute_command("CLIENT", "UNPAUSE")
            await pauser.aclose()
        finished = await asyncio.gather(*in_flight)
        code = await server.exit_code(tries=800)  # past grace + the stop margin: a hang shows its own log line

    assert [(r.status, r.json) for r in refused] == [(503, SERVICE_DOWN)] * 2
    assert [r.status for r in finished] == [201] * 8
    assert code == 0, server.messages()
    assert await stored_names(own_redis.url) == {f"k{i}" for i in range(8)}
    assert [m for m in server.messages() if m in ("serving", "draining", "stopped")] == [
        "serving",
        "draining",
        "stopped",
    ]


async def test_gateway_sigterm_under_load_finishes_in_flight_refuses_new_and_exits_0(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    target, metrics, listen = (f"127.0.0.1:{free_port()}" for _ in range(3))
    token = await new_token(own_redis.url, "alice")
    pauser = aioredis.from_url(own_redis.url)
    # Redis' socket timeout well past the pause: only the gateway's drain decides these requests' fate.
    server_settings = {"USERSECRETS_METRICS_LISTEN": metrics, "USERSECRETS_REDIS_TIMEOUT": "30"}
    async with (
        server_process(tmp_path, target, own_redis.url, generate_key_spec(), **server_settings),
        gateway_process(tmp_path, listen, target, USERSECRETS_SHUTDOWN_GRACE="10") as gateway,
        aiohttp.ClientSession(f"http://{listen}", timeout=aiohttp.ClientTimeout(total=15)) as http,
    ):
        try:
            in_flight = await eight_creates_held(pauser, http, token, metrics)
            gateway.signal(signal.SIGTERM)

            async def refused() -> bool:
                # A connection accepted just before the listener closed is held, then dropped: try again.
                try:
                    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as fresh:
                        await call(fresh, "GET", f"http://{listen}{SECRETS}", token=token)
                except aiohttp.ClientConnectorError:
                    return True
                except (aiohttp.ClientError, TimeoutError):
                    return False
                return False

            await until(refused, "new connections refused")
            await asyncio.sleep(0.5)  # well into the drain: a short grace would have cut these requests by now
            assert not any(task.done() for task in in_flight)
        finally:
            await pauser.execute_command("CLIENT", "UNPAUSE")
            await pauser.aclose()
        finished = await asyncio.gather(*in_flight)
        code = await gateway.exit_code()

    assert [r.status for r in finished] == [201] * 8
    assert code == 0, gateway.lines[-20:]
    assert await stored_names(own_redis.url) == {f"k{i}" for i in range(8)}
    logged = as_json_lines(gateway.lines)
    assert [p["msg"] for p in logged if p["msg"] in ("starting", "stopped")] == ["starting", "stopped"]
    assert [p["status"] for p in logged if p["msg"] == "request" and p["method"] == "POST"] == [201] * 8
