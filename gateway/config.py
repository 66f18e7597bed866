"""Gateway configuration: read once from flags and environment at start, then passed down."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from usersecrets.common.relay import MAX_CALLS
from usersecrets.common.settings import build_parser, load_settings


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    grpc_target: str = "127.0.0.1:50051"
    http_listen: str = "127.0.0.1:8080"
    max_body_bytes: int = 1024 * 1024
    # Applies when the request has no Grpc-Timeout header.
    default_deadline_seconds: float = 10.0
    health_timeout_seconds: float = 2.0
    shutdown_grace_seconds: float = 10.0
    log_level: str = "info"
    # TLS towards the gRPC server: a CA turns TLS on; a certificate and key add a client identity (mTLS).
    grpc_tls_ca: str = ""
    grpc_tls_cert: str = ""
    grpc_tls_key: str = ""
    grpc_tls_server_name: str = ""
    keepalive_seconds: float = 30.0
    # The channel's reconnect backoff ceiling: how soon a restarted server is noticed at worst.
    max_reconnect_backoff_seconds: float = 2.0
    # Abuse bounds. API requests handled at once by this process (more are answered 503 at once); time to
    # receive a whole body (a slow sender gets 408); header count and size of one header line, so that a
    # request's headers take at most max_headers * max_header_bytes.
    max_concurrent_requests: int = 1000
    body_timeout_seconds: float = 15.0
    max_headers: int = 64
    max_header_bytes: int = 8190
    # Calls travel to the server in relay batches: at most this many batches on their way at once (0: one
    # gRPC call per request, as towards a server without the Relay service), each of at most relay_max_calls.
    relay_in_flight: int = 2
    relay_max_calls: int = 64
    # A batch out longer than this gives its slot back, so a slow call cannot hold up the calls queued behind it.
    relay_stall_seconds: float = 0.05

    def __post_init__(self) -> None:
        assert self.max_body_bytes > 0, "max_body_bytes must be positive"
        assert self.default_deadline_seconds > 0, "default_deadline_seconds must be positive"
        assert bool(self.grpc_tls_cert) == bool(self.grpc_tls_key), "TLS cert and key go together"
        assert not self.grpc_tls_cert or self.grpc_tls_ca, "a client certificate needs grpc_tls_ca"
        assert self.max_concurrent_requests > 0, "max_concurrent_requests must be positive"
        assert self.body_timeout_seconds > 0, "body_timeout_seconds must be positive"
        assert self.max_headers > 0 and self.max_header_bytes > 0, "header bounds must be positive"
        assert self.relay_in_flight >= 0, "relay_in_flight must not be negative"
        assert self.relay_stall_seconds > 0, "relay_stall_seconds must be positive"
        assert 0 < self.relay_max_calls <= MAX_CALLS, f"relay_max_calls must be 1 to {MAX_CALLS}"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.http_listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


ENV = {
    "grpc_target": "USERSECRETS_GRPC_TARGET",
    "http_listen": "USERSECRETS_HTTP_LISTEN",
    "max_body_bytes": "USERSECRETS_MAX_BODY_BYTES",
    "default_deadline_seconds": "USERSECRETS_DEFAULT_DEADLINE",
    "health_timeout_seconds": "USERSECRETS_HEALTH_TIMEOUT",
    "shutdown_grace_seconds": "USERSECRETS_SHUTDOWN_GRACE",
    "log_level": "USERSECRETS_LOG_LEVEL",
    "grpc_tls_ca": "USERSECRETS_GRPC_TLS_CA",
    "grpc_tls_cert": "USERSECRETS_GRPC_TLS_CERT",
    "grpc_tls_key": "USERSECRETS_GRPC_TLS_KEY",
    "grpc_tls_server_name": "USERSECRETS_GRPC_TLS_SERVER_NAME",
    "keepalive_seconds": "USERSECRETS_GRPC_KEEPALIVE",
    "max_reconnect_backoff_seconds": "USERSECRETS_GRPC_MAX_BACKOFF",
    "max_concurrent_requests": "USERSECRETS_MAX_CONCURRENT_REQUESTS",
    "body_timeout_seconds": "USERSECRETS_BODY_TIMEOUT",
    "max_headers": "USERSECRETS_MAX_HEADERS",
    "max_header_bytes": "USERSECRETS_MAX_HEADER_BYTES",
    "relay_in_flight": "USERSECRETS_RELAY_IN_FLIGHT",
    "relay_max_calls": "USERSECRETS_RELAY_MAX_CALLS",
    "relay_stall_seconds": "USERSECRETS_RELAY_STALL",
}


def parser() -> argparse.ArgumentParser:
    return build_parser(GatewayConfig, ENV, "usersecrets-gateway", "The usersecrets REST gateway.")


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Flags win over environment variables, which win over defaults."""
    return load_settings(GatewayConfig, ENV, parser(), argv, environ)
