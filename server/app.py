"""Build the gRPC server: `await create_server(config)` returns a ServerApp whose `port` is bound.

Binding happens before serving, so tests pass port 0 and read the port back. SO_REUSEPORT is off: a busy
port fails loudly instead of silently sharing traffic with a stranger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis, RedisCluster

from usersecrets.common.jsonlog import event
from usersecrets.server.config import ServerConfig
from usersecrets.server.crypto import Barrier, KeyRing, key_ring_from_config
from usersecrets.server.durable import WaitPolicy
from usersecrets.server.health import SERVICE_NAME, RedisHealth
from usersecrets.server.identity import IdentityStore
from usersecrets.server.interceptor import CallInterceptor, CallPipeline
from usersecrets.server.metrics import ServerMetrics
from usersecrets.server.model import Principal
from usersecrets.server.ratelimit import TokenBucketLimiter
from usersecrets.server.reads import pipelined_reads
from usersecrets.server.redis_client import connect
from usersecrets.server.relay import RelayServicer
from usersecrets.server.service import SecretsService
from usersecrets.server.servicer import UserSecretsServicer
from usersecrets.server.store import SecretStore
from usersecrets.server.tokencache import CachedAuthenticator
from usersecrets.v1 import relay_pb2 as relay
from usersecrets.v1 import relay_pb2_grpc as relay_grpc
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

log = logging.getLogger("usersecrets.server")

SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)


def redis_client(config: ServerConfig) -> Redis | RedisCluster:
    return connect(
        config.redis_url,
        timeout=config.redis_timeout_seconds,
        max_connections=config.redis_max_connections,
        mode=config.redis_mode,
    )


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not (config.tls_cert and config.tls_key):
        return None
    pair = (Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    credentials = server_credentials(config)
    try:
        if credentials is None:
            port = server.add_insecure_port(config.grpc_listen)
        else:
            port = server.add_secure_port(config.grpc_listen, credentials)
    except RuntimeError as exc:  # grpcio's "Failed to bind to address"
        raise OSError(f"cannot listen on {config.grpc_listen}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {config.grpc_listen}")
    return port


def authenticator(identity: IdentityStore, config: ServerConfig) -> Callable[[str], Awaitable[Principal]]:
    if config.token_cache_seconds > 0:
        return CachedAuthenticator(identity, config.token_cache_seconds).authenticate
    return identity.authenticate


@dataclass
class ServerApp:
    server: grpc.aio.Server
    port: int
    redis: Redis | RedisCluster
    health: RedisHealth
    metrics: ServerMetrics
    identity: IdentityStore
    store: SecretStore

    async def start(self) -> None:
        await self.health.start()
        await self.server.start()

    async def stop(self, grace: float | None = None, on_draining: Callable[[], None] | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within `grace`, then release Redis.

        `on_draining` runs once new calls are being refused (grpc starts that on the first step of stop)."""
        stopping = asyncio.ensure_future(self.server.stop(grace))
        await asyncio.sleep(0)
        if on_draining is not None:
            on_draining()
        await self.health.drain()
        await stopping
        event(log, "calls finished")  # the steps are logged: a stop that hangs shows where
        await self.health.stop()
        await self.redis.aclose()


async def create_server(config: ServerConfig, *, key_ring: KeyRing | None = None) -> ServerApp:
    ring = key_ring or key_ring_from_config(config)
    redis = redis_client(config)
    metrics = ServerMetrics()
    reads = pipelined_reads(redis)  # shared: the token and secret reads of one relay batch leave together
    identity = IdentityStore(redis, reads=reads)
    store = SecretStore(redis, WaitPolicy(config.redis_wait_replicas, config.redis_wait_timeout_ms), reads)
    service = SecretsService(store, identity, Barrier(ring))
    health = RedisHealth(redis, metrics, config.health_interval_seconds)

    limiter = (
        TokenBucketLimiter(config.rate_limit_per_second, config.rate_limit_burst)
        if config.rate_limit_per_second > 0
        else None
    )
    pipeline = CallPipeline(authenticator(identity, config), metrics, limiter)
    server = grpc.aio.server(
        interceptors=[CallInterceptor(pipeline)],
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs or None,
    )
    servicer = UserSecretsServicer(service)
    pb_grpc.add_UserSecretsServiceServicer_to_server(servicer, server)
    relay_grpc.add_RelayServicer_to_server(RelayServicer(servicer, pipeline, config.max_concurrent_rpcs), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    relay_name = relay.DESCRIPTOR.services_by_name["Relay"].full_name
    names = (SERVICE_NAME, relay_name, reflection.SERVICE_NAME, "grpc.health.v1.Health")
    reflection.enable_server_reflection(names, server)
    try:
        port = _bind(server, config)
    except OSError:
        await redis.aclose()
        raise
    return ServerApp(server, port, redis, health, metrics, identity, store)
