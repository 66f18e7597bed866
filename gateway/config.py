"""Gateway configuration: read once from flags and environment at start, then passed down."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        assert self.max_body_bytes > 0, "max_body_bytes must be positive"
        assert self.default_deadline_seconds > 0, "default_deadline_seconds must be positive"
        assert bool(self.grpc_tls_cert) == bool(self.grpc_tls_key), "TLS cert and key go together"
        assert not self.grpc_tls_cert or self.grpc_tls_ca, "a client certificate needs grpc_tls_ca"

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
}


def parser() -> argparse.ArgumentParser:
    return build_parser(GatewayConfig, ENV, "usersecrets-gateway", "The usersecrets REST gateway.")


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Flags win over environment variables, which win over defaults."""
    return load_settings(GatewayConfig, ENV, parser(), argv, environ)
