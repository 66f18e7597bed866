"""The one way this project opens Redis: bounded pool, bounded waits, one quick retry; three topologies.

redis-py's default (10 retries with backoff) would hold a caller for seconds while Redis is down; a secrets
service should answer 503 at once instead. A single retry still covers a connection that went stale across a
Redis restart.

The URL picks the topology (USERSECRETS_REDIS_MODE=cluster also turns a plain redis:// URL into a cluster seed):

    redis://[[user]:password@]host:port/db              one server (rediss:// TLS, unix:// a socket)
    redis+cluster://[[user]:password@]host:port,...      Redis Cluster: the hosts are seeds, the rest is discovered
    redis+sentinel://[[user]:password@]host:port,.../master-name[/db]
                                                         the master that Sentinel names, followed across failovers

`rediss+cluster://` and `rediss+sentinel://` use TLS to the data nodes. The URL's credentials are for the data
nodes; Sentinels that need their own take `?sentinel_username=...&sentinel_password=...`. Every client returned
here closes all its connections on `aclose()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

STANDALONE, CLUSTER = "standalone", "cluster"
MODES = ("", STANDALONE, CLUSTER)
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
DEFAULT_PORT, DEFAULT_SENTINEL_PORT = 6379, 26379
SENTINEL_QUERY = ("sentinel_username", "sentinel_password")


def quick_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1)


@dataclass(frozen=True)
class MultiHostUrl:
    """A `scheme://[user:password@]host:port,host:port/path?query` URL, which urllib cannot split."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    path: tuple[str, ...]
    query: dict[str, str]

    @classmethod
    def parse(cls, url: str, default_port: int) -> MultiHostUrl:
        # Messages name the part that is wrong, never the URL: it may hold a password.
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError("Redis URL has no scheme")
        rest, _, query_text = rest.partition("?")
        netloc, _, path = rest.partition("/")
        userinfo, at, hostlist = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        hosts = tuple(_host_port(item, default_port) for item in hostlist.split(",") if item.strip())
        if not hosts:
            raise ValueError(f"{scheme} URL names no host")
        query: dict[str, str] = {}
        for name, values in parse_qs(query_text, keep_blank_values=True).items():
            query[name] = values[-1]
        segments = tuple(unquote(s) for s in path.split("/") if s)
        return cls(scheme.lower(), hosts, username, password, segments, query)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"Redis URL has a bad port {port_text!r}") from None
    if not host or not 0 < port < 65536:
        raise ValueError("Redis URL has an empty host or a port out of range")
    return host, port


def connect(url: str, *, timeout: float = 5.0, max_connections: int = 64, mode: str = "") -> Redis | RedisCluster:
    """A client for `url` (see the module docstring). Nothing connects until the first command."""
    if mode not in MODES:
        raise ValueError(f"unknown Redis mode {mode!r}: use {STANDALONE} or {CLUSTER}")
    scheme = url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        if mode == CLUSTER:
            raise ValueError("a redis+sentinel URL cannot be used in cluster mode")
        return _sentinel(url, timeout, max_connections)
    if scheme in CLUSTER_SCHEMES or mode == CLUSTER:
        return _cluster(url, timeout, max_connections)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,  # waiting for a free connection
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=quick_retry(),
    )
    client = Redis(connection_pool=pool, decode_responses=False, retry=quick_retry())
    client.auto_close_connection_pool = True  # one owner: aclose() also closes the pool
    return client


class QueueingRedisCluster(RedisCluster):
    """redis-py's cluster client fails at once (MaxConnectionsError) when a node has no free connection, where
    the standalone pool queues. This one queues too: at most `max_connections` commands in flight in all, so
    never more on one node, each waiting up to `queue_timeout` seconds for its turn."""

    def __init__(self, *, queue_timeout: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._turns = asyncio.Semaphore(max_connections)
        self._queue_timeout = queue_timeout

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the connections; never nest turns (a full queue would wait on itself)."""
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise rexc.ConnectionError("No connection available.") from None
        try:
            yield
        finally:
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)


def _cluster(url: str, timeout: float, max_connections: int) -> QueueingRedisCluster:
    scheme = url.partition("://")[0].lower()
    if scheme not in CLUSTER_SCHEMES and scheme not in ("redis", "rediss"):
        raise ValueError(f"cluster mode needs a redis, rediss or redis+cluster URL, not {scheme}")
    parsed = MultiHostUrl.parse(url, DEFAULT_PORT)
    tls = CLUSTER_SCHEMES.get(parsed.scheme, parsed.scheme == "rediss")
    if parsed.path not in ((), ("0",)):
        raise ValueError("Redis Cluster has only database 0")
    return QueueingRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
        username=parsed.username,
        password=parsed.password,
        ssl=tls,
        max_connections=max_connections,
        queue_timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=quick_retry(),
        decode_responses=False,
    )


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master discovery with the bounded, queueing pool of the standalone client."""


class SentinelRedis(Redis):
    """A master client that also closes its Sentinel clients."""

    sentinel: Sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            await self.sentinel.aclose()


def _sentinel(url: str, timeout: float, max_connections: int) -> SentinelRedis:
    parsed = MultiHostUrl.parse(url, DEFAULT_SENTINEL_PORT)
    unknown = set(parsed.query) - set(SENTINEL_QUERY)
    if unknown:
        raise ValueError(f"unknown redis+sentinel URL options: {', '.join(sorted(unknown))}")
    if not parsed.path or len(parsed.path) > 2:
        raise ValueError("a redis+sentinel URL ends in /<master-name> or /<master-name>/<db>")
    master_name = parsed.path[0]
    try:
        db = int(parsed.path[1]) if len(parsed.path) == 2 else 0
    except ValueError:
        raise ValueError("the database after the master name must be a number") from None
    sockets = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel_auth = {
        "username": parsed.query.get("sentinel_username") or None,
        "password": parsed.query.get("sentinel_password") or None,
    }
    sentinel = Sentinel(list(parsed.hosts), sentinel_kwargs={**sockets, **sentinel_auth})
    node_options: dict[str, Any] = {
        **sockets,
        "username": parsed.username,
        "password": parsed.password,
        "db": db,
        "retry": quick_retry(),
        "ssl": SENTINEL_SCHEMES[parsed.scheme],
    }
    pool = _BlockingSentinelPool(
        master_name, sentinel, max_connections=max_connections, timeout=timeout, **node_options
    )
    client = SentinelRedis(connection_pool=pool, decode_responses=False, retry=quick_retry())
    client.sentinel = sentinel
    client.auto_close_connection_pool = True
    return client
