"""redis_client.connect(): the URL picks standalone, Cluster or Sentinel; and WAIT on one server with a replica.

The topologies themselves run in test_scale_cluster.py and test_scale_failover.py; here are the URL table,
the refusals (whose text never quotes the URL: it may hold a password) and durable writes on a standalone
master whose replica comes and goes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

from tests.support.cluster import info, wait_for
from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.redis_proc import RedisProcess
from tests.support.stack import running_server
from usersecrets.server import keys
from usersecrets.server.app import create_server
from usersecrets.server.config import ServerConfig
from usersecrets.server.crypto import generate_key_spec
from usersecrets.server.durable import NotDurable, WaitPolicy
from usersecrets.server.redis_client import MultiHostUrl, SentinelRedis, connect

SECRETS = "/api/v2/users/me/secrets"
UNAVAILABLE = "The secrets store is unavailable. Try again later."

PARSED = [
    ("seeds", "redis+cluster://a:7000,b:7001/", 6379, (("a", 7000), ("b", 7001)), None, None, (), {}),
    ("default port", "redis+cluster://a,b/", 6379, (("a", 6379), ("b", 6379)), None, None, (), {}),
    ("quoted password", "redis+cluster://us%3Aer:p%40ss@a:1/", 6379, (("a", 1),), "us:er", "p@ss", (), {}),
    ("ipv6", "redis+cluster://:pw@[::1]:7000,h/", 6379, (("::1", 7000), ("h", 6379)), None, "pw", (), {}),
    (
        "sentinel",
        "redis+sentinel://s1,s2:26380/main/2?sentinel_password=x",
        26379,
        (("s1", 26379), ("s2", 26380)),
        None,
        None,
        ("main", "2"),
        {"sentinel_password": "x"},
    ),
]


@pytest.mark.parametrize(
    ("url", "default_port", "hosts", "username", "password", "path", "query"),
    [case[1:] for case in PARSED],
    ids=[case[0] for case in PARSED],
)
def test_multi_host_urls_parse(
    url: str, default_port: int, hosts: Any, username: Any, password: Any, path: Any, query: Any
) -> None:
    parsed = MultiHostUrl.parse(url, default_port)
    assert (parsed.hosts, parsed.username, parsed.password, parsed.path, parsed.query) == (
        hosts,
        username,
        password,
        path,
        query,
    )


async def test_each_url_gives_its_client() -> None:
    standalone = connect("redis://127.0.0.1:1/3", max_connections=7)
    assert type(standalone) is Redis and standalone.auto_close_connection_pool
    assert standalone.connection_pool.max_connections == 7

    for url, mode in [("redis+cluster://127.0.0.1:1,127.0.0.1:2/", ""), ("redis://127.0.0.1:1/0", "cluster")]:
        cluster = connect(url, mode=mode, max_connections=9)
        assert isinstance(cluster, RedisCluster), (url, mode)
        assert sorted(n.port for n in cluster.startup_nodes) == ([1, 2] if "," in url else [1])
        assert cluster.get_connection_kwargs()["max_connections"] == 9
        assert cluster._turns._value == 9  # the queue that replaces MaxConnectionsError
        await cluster.aclose()

    secure = connect("rediss+cluster://h:1/")
    assert isinstance(secure, RedisCluster) and secure.get_connection_kwargs()["connection_class"].__name__ == (
        "SSLConnection"
    )

    sentinel = connect("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/main/4", max_connections=5, timeout=1.5)
    assert isinstance(sentinel, SentinelRedis)
    pool = sentinel.connection_pool
    assert (pool.service_name, pool.max_connections, pool.timeout) == ("main", 5, 1.5)
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (4, "pw")
    assert len(sentinel.sentinel.sentinels) == 2
    await sentinel.aclose()
    await standalone.aclose()


REFUSED = [
    ("unknown mode", "redis://:s3cret@h:1/0", "sharded", "unknown Redis mode"),
    ("sentinel in cluster mode", "redis+sentinel://:s3cret@h:1/m", "cluster", "cannot be used in cluster mode"),
    ("sentinel without master", "redis+sentinel://:s3cret@h:1/", "", "ends in /<master-name>"),
    ("sentinel bad db", "redis+sentinel://:s3cret@h:1/m/x", "", "must be a number"),
    ("sentinel unknown option", "redis+sentinel://:s3cret@h:1/m?foo=1", "", "unknown redis+sentinel URL options: foo"),
    ("cluster database", "redis+cluster://:s3cret@h:1/2", "", "only database 0"),
    ("cluster unix socket", "unix://:s3cret@/tmp/r.sock", "cluster", "cluster mode needs"),
    ("bad port", "redis+cluster://:s3cret@h:port/", "", "bad port"),
    ("no host", "redis+cluster://:s3cret@/", "", "names no host"),
]


@pytest.mark.parametrize(("url", "mode", "text"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_urls_are_refused_without_quoting_them(url: str, mode: str, text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text)) as refused:
        connect(url, mode=mode)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(("replicas", "timeout_ms"), [(-1, 100), (1, 0), (2, -5)])
def test_wait_policy_needs_sane_numbers(replicas: int, timeout_ms: int) -> None:
    with pytest.raises(ValueError):
        WaitPolicy(replicas, timeout_ms)


async def test_server_refuses_to_start_with_a_wait_that_could_block_forever(redis_url: str) -> None:
    config = ServerConfig(
        redis_url=redis_url, encryption_keys=generate_key_spec(), redis_wait_replicas=1, redis_wait_timeout_ms=0
    )
    with pytest.raises(ValueError, match="timeout above 0 ms"):
        await create_server(config)


def test_not_durable_says_counts_only() -> None:
    assert str(NotDurable(0, 2, 150)) == "0 of 2 replicas acknowledged the write within 150 ms"


# ---- WAIT on one master with one replica ----------------------------------------------------------------------


@pytest.fixture
def master_and_replica(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    master = RedisProcess(tmp_path / "master", extra=["--repl-diskless-sync-delay", "0"])
    master.start()
    replica = RedisProcess(tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(master.port)])
    try:
        replica.start()
        wait_for("the replica in sync", lambda: info(replica.port, "replication").get("master_link_status") == "up")
        yield master, replica
    finally:
        replica.stop()
        master.stop()


@pytest.fixture
async def durable_gateway(
    master_and_replica: tuple[RedisProcess, RedisProcess],
) -> AsyncIterator[GatewayStack]:
    master, _ = master_and_replica
    async with (
        running_server(master.url, redis_wait_replicas=1, redis_wait_timeout_ms=1000) as stack,
        gateway_in_front_of(stack) as gw,
    ):
        yield gw


async def test_writes_wait_for_the_replica_and_fail_loudly_without_it(
    durable_gateway: GatewayStack, master_and_replica: tuple[RedisProcess, RedisProcess]
) -> None:
    gw = durable_gateway
    _, replica = master_and_replica
    user, token = await gw.user("alice")
    created = await call(gw.http, "POST", SECRETS, token=token, body={"name": "a", "value": "v"})
    assert created.status == 201, created
    replica_view = Redis(port=replica.port)
    assert await replica_view.hget(keys.secret(user.id, "a"), "name") == b"a"  # there before the 201
    patched = await call(gw.http, "PATCH", f"{SECRETS}/a", token=token, body={"description": "d"})
    assert (patched.status, patched.json["description"]) == (200, "d")
    assert await replica_view.hget(keys.secret(user.id, "a"), "description") == b"d"
    await replica_view.aclose()

    # A master that lost its script cache: the script is loaded again, not reported as a failure.
    await gw.server.redis.script_flush()
    assert (await call(gw.http, "DELETE", f"{SECRETS}/a", token=token)).status == 204

    replica.stop()
    refused = await call(gw.http, "POST", SECRETS, token=token, body={"name": "b", "value": "v"})
    detail = "0 of 1 replicas acknowledged the write within 1000 ms"
    assert (refused.status, refused.json) == (503, {"message": UNAVAILABLE, "detail": detail})
    # Reads do not wait; the master did apply the refused write, which is why the caller must not assume either way.
    listed = await call(gw.http, "GET", SECRETS, token=token)
    assert (listed.status, [s["name"] for s in listed.json]) == (200, ["b"])
