"""Failover under write load through the gateway, with WAIT 1 (issue 7): Redis Cluster and Sentinel.

Writers create and delete secrets through the REST gateway while a master is SIGKILLed. Afterwards every
write that was answered with success holds: an acknowledged create is there (unless an acknowledged delete
followed), an acknowledged delete is gone. The gateway and server are never restarted and return to 2xx.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cluster import LocalCluster, LocalSentinel, cluster_nodes, wait_for
from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.stack import running_server
from usersecrets.server import keys
from usersecrets.server.consistency import check_all

pytestmark = pytest.mark.slow

SECRETS = "/api/v2/users/me/secrets"
UNAVAILABLE = "The secrets store is unavailable. Try again later."
WAIT_TIMEOUT_MS = 300
WINDOW = 20  # each writer deletes the secret it made WINDOW creates ago: a user stays under the 50 limit
WRITERS = 4


@dataclass
class Writer:
    """One user's writes and what each answer promises about the end state."""

    token: str
    user_id: str
    must_exist: set[str] = field(default_factory=set)
    must_be_gone: set[str] = field(default_factory=set)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    last_ok: float = 0.0

    async def run(self, gw: GatewayStack, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            name = f"s{i:05d}"
            made = await call(gw.http, "POST", SECRETS, token=self.token, body={"name": name, "value": "v"})
            self.statuses["create", made.status] += 1
            if made.status == 201:
                self.must_exist.add(name)
                self.last_ok = time.monotonic()
            if i >= WINDOW:
                old = f"s{i - WINDOW:05d}"
                gone = await call(gw.http, "DELETE", f"{SECRETS}/{old}", token=self.token)
                self.statuses["delete", gone.status] += 1
                self.must_exist.discard(old)  # whatever the answer, a create is no longer promised
                if gone.status in (204, 404):
                    self.must_be_gone.add(old)
                else:
                    self.must_be_gone.discard(old)
            i += 1
            await asyncio.sleep(0.002)

    async def check(self, gw: GatewayStack) -> None:
        listed = await call(gw.http, "GET", SECRETS, token=self.token)
        assert listed.status == 200, listed
        names = {s["name"] for s in listed.json}
        assert self.must_exist <= names, f"acknowledged creates lost: {sorted(self.must_exist - names)}"
        assert not (self.must_be_gone & names), f"acknowledged deletes undone: {sorted(self.must_be_gone & names)}"
        assert set(self.statuses) <= {("create", 201), ("create", 503), ("delete", 204), ("delete", 503)} | {
            ("delete", 404)
        }, self.statuses


async def _writers(gw: GatewayStack, count: int) -> list[Writer]:
    writers = []
    for i in range(count):
        user, token = await gw.user(f"writer{i}")
        writers.append(Writer(token, user.id))
    return writers


async def _under_load(
    gw: GatewayStack, writers: list[Writer], disrupt: Callable[[], Awaitable[None]], victim_writer: Writer
) -> None:
    """Run the writers, disrupt, then keep writing until the victim's writer has had 2xx again for a while."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(gw, stop)) for w in writers]
    try:
        await asyncio.sleep(0.5)
        assert all(w.statuses["create", 201] for w in writers), [w.statuses for w in writers]
        await disrupt()
        recovered_after = time.monotonic()
        deadline = recovered_after + 30
        while victim_writer.last_ok < recovered_after + 0.3:
            assert time.monotonic() < deadline, f"no 2xx after the failover: {victim_writer.statuses}"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@asynccontextmanager
async def behind_a_gateway(redis: LocalCluster | LocalSentinel) -> AsyncIterator[GatewayStack]:
    """The Redis topology started, a server over it that waits for one replica per write (the rate limiter off:
    the load is as fast as the stack goes) and a gateway in front; the topology stopped afterwards."""
    try:
        await asyncio.to_thread(redis.start)
        overrides = {"redis_wait_replicas": 1, "redis_wait_timeout_ms": WAIT_TIMEOUT_MS, "rate_limit_per_second": 0}
        async with running_server(redis.url, **overrides) as stack, gateway_in_front_of(stack) as gw:
            yield gw
    finally:
        await asyncio.to_thread(redis.stop)


@pytest.fixture
async def cluster_gateway(tmp_path: Path) -> AsyncIterator[tuple[LocalCluster, GatewayStack]]:
    cluster = LocalCluster(tmp_path / "cluster")
    async with behind_a_gateway(cluster) as gw:
        yield cluster, gw


async def test_cluster_master_killed_under_load(cluster_gateway: tuple[LocalCluster, GatewayStack]) -> None:
    cluster, gw = cluster_gateway
    writers = await _writers(gw, WRITERS)
    victim_slot = gw.server.redis.keyslot(keys.user(writers[0].user_id))
    victim = cluster.master_of(victim_slot)
    replica = cluster.replica_of(victim)

    async def fail_over() -> None:
        cluster.kill(victim)
        survivor = next(n for n in cluster.live())
        await asyncio.to_thread(
            wait_for,
            "the replica's promotion",
            lambda: any(v.port == replica.port and v.role == "master" for v in cluster_nodes(survivor.port)),
        )
        # The promoted master has no replica yet: a write is refused, never acknowledged without one.
        refused = await _until_refused(gw, writers[0].token)
        detail = f"0 of 1 replicas acknowledged the write within {WAIT_TIMEOUT_MS} ms"
        assert (refused.status, refused.json) == (503, {"message": UNAVAILABLE, "detail": detail})
        # Back as it would be in Kubernetes: same address and nodes.conf; it rejoins as the new replica.
        await asyncio.to_thread(cluster.restart, victim)
        await asyncio.to_thread(wait_for, "a healthy cluster again", cluster.healthy)

    await _under_load(gw, writers, fail_over, writers[0])
    assert cluster.master_of(victim_slot).port == replica.port
    for writer in writers:
        await writer.check(gw)
    assert writers[0].statuses["create", 503] >= 1
    assert await check_all(gw.server.redis) == []


async def _until_refused(gw: GatewayStack, token: str):  # type: ignore[no-untyped-def]
    """A create that ends in the WAIT refusal (a first one may still meet the stale topology's dead node)."""
    for i in range(50):
        reply = await call(gw.http, "POST", SECRETS, token=token, body={"name": f"probe{i}", "value": "v"})
        assert reply.status == 503, reply
        if "replicas acknowledged" in reply.json.get("detail", ""):
            return reply
    raise AssertionError("no WAIT refusal")


@pytest.fixture
async def sentinel_gateway(tmp_path: Path) -> AsyncIterator[tuple[LocalSentinel, GatewayStack]]:
    sentinel = LocalSentinel(tmp_path / "sentinel")
    async with behind_a_gateway(sentinel) as gw:
        yield sentinel, gw


async def test_sentinel_master_killed_under_load(sentinel_gateway: tuple[LocalSentinel, GatewayStack]) -> None:
    sentinel, gw = sentinel_gateway
    writers = await _writers(gw, WRITERS)
    old_master = sentinel.master()

    async def fail_over() -> None:
        sentinel.kill(old_master)
        await asyncio.to_thread(
            wait_for, "Sentinel's switch to a replica", lambda: sentinel.master_port() not in (None, old_master.port)
        )
        # The other replica follows the new master, so WAIT 1 is met again without bringing the old one back.
        await asyncio.to_thread(
            wait_for, "the remaining replica", lambda: sentinel.replicas_in_sync(sentinel.master(), 1)
        )

    await _under_load(gw, writers, fail_over, writers[0])
    assert sentinel.master().port != old_master.port
    for writer in writers:
        await writer.check(gw)
    assert await check_all(gw.server.redis) == []
