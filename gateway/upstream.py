"""The one long-lived gRPC channel towards the server, and the calls made on it.

The channel reconnects by itself with backoff; calls never wait for it (`wait_for_ready=False`), so a server
that is down is a fast UNAVAILABLE (503) instead of a request hanging until its deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from usersecrets.gateway.config import GatewayConfig
from usersecrets.gateway.relay import RESPONSE_BYTES_PER_CALL, RelayClient
from usersecrets.gateway.routes import RpcRoute

USER_AGENT = "usersecrets-gateway"


def channel_options(config: GatewayConfig) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.primary_user_agent", USER_AGENT),
        # Pings only while calls are open: the server's default policy (a ping per 5 minutes without
        # calls) would answer idle pings with GOAWAY too_many_pings.
        ("grpc.keepalive_time_ms", int(config.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", int(config.max_reconnect_backoff_seconds * 1000)),
        # With a `dns:///headless-service:port` target every server replica gets calls, not just the first.
        ("grpc.lb_policy_name", "round_robin"),
        # One relay batch answers up to relay_max_calls calls at once.
        ("grpc.max_receive_message_length", max(4 * 1024 * 1024, config.relay_max_calls * RESPONSE_BYTES_PER_CALL)),
    ]
    if config.grpc_tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.grpc_tls_server_name))
    return options


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def open_channel(config: GatewayConfig) -> grpc.aio.Channel:
    options = channel_options(config)
    if not config.grpc_tls_ca:
        return grpc.aio.insecure_channel(config.grpc_target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(config.grpc_tls_ca),
        private_key=_read(config.grpc_tls_key),
        certificate_chain=_read(config.grpc_tls_cert),
    )
    return grpc.aio.secure_channel(config.grpc_target, credentials, options=options)


@dataclass(frozen=True, slots=True)
class Upstream:
    channel: grpc.aio.Channel
    calls: dict[str, grpc.aio.UnaryUnaryMultiCallable]  # by RpcRoute.rpc_path
    health: health_pb2_grpc.HealthStub
    relay: RelayClient

    @classmethod
    def connect(
        cls, config: GatewayConfig, routes: Iterable[RpcRoute], on_batch: Callable[[int], None] | None = None
    ) -> Upstream:
        channel = open_channel(config)
        calls = {
            r.rpc_path: channel.unary_unary(
                r.rpc_path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=r.response_class.FromString,
            )
            for r in routes
        }
        relay = RelayClient(
            channel, config.relay_in_flight, config.relay_max_calls, on_batch, config.relay_stall_seconds
        )
        return cls(channel, calls, health_pb2_grpc.HealthStub(channel), relay)
