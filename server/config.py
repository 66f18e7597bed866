"""Server configuration: read once from flags and environment at start, then passed down."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from usersecrets.common.settings import build_parser, load_settings


@dataclass(frozen=True, slots=True)
class ServerConfig:
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Comma-separated base64 32-byte keys, the first one active. Empty means "refuse to start"
    # unless key_file names the embedded development key file.
    encryption_keys: str = ""
    key_file: str = ""
    grpc_listen: str = "127.0.0.1:50051"
    log_level: str = "info"
    shutdown_grace_seconds: float = 10.0
    redis_timeout_seconds: float = 5.0
    redis_max_connections: int = 64
    health_interval_seconds: float = 1.0
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    metrics_listen: str = ""
    # Per-token token bucket; a rate of 0 turns limiting off.
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    max_concurrent_rpcs: int = 1000
    # A verified token is trusted for this long without asking Redis again: revocation takes effect within it.
    token_cache_seconds: float = 2.0
    # "cluster" treats a plain redis:// URL as a Redis Cluster seed (redis+cluster:// and redis+sentinel://
    # URLs choose by themselves). See redis_client.py.
    redis_mode: str = ""
    # WAIT for this many replicas after every write (0: answer as soon as the master has it); fewer
    # acknowledgements within the timeout answer 503. See durable.py for the trade-off.
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 500


_ENV = {
    "redis_url": "USERSECRETS_REDIS_URL",
    "encryption_keys": "USERSECRETS_ENCRYPTION_KEYS",
    "key_file": "USERSECRETS_KEY_FILE",
    "grpc_listen": "USERSECRETS_GRPC_LISTEN",
    "log_level": "USERSECRETS_LOG_LEVEL",
    "shutdown_grace_seconds": "USERSECRETS_SHUTDOWN_GRACE",
    "redis_timeout_seconds": "USERSECRETS_REDIS_TIMEOUT",
    "redis_max_connections": "USERSECRETS_REDIS_MAX_CONNECTIONS",
    "health_interval_seconds": "USERSECRETS_HEALTH_INTERVAL",
    "tls_cert": "USERSECRETS_TLS_CERT",
    "tls_key": "USERSECRETS_TLS_KEY",
    "tls_client_ca": "USERSECRETS_TLS_CLIENT_CA",
    "metrics_listen": "USERSECRETS_METRICS_LISTEN",
    "rate_limit_per_second": "USERSECRETS_RATE_LIMIT",
    "rate_limit_burst": "USERSECRETS_RATE_LIMIT_BURST",
    "max_concurrent_rpcs": "USERSECRETS_MAX_CONCURRENT_RPCS",
    "token_cache_seconds": "USERSECRETS_TOKEN_CACHE_SECONDS",
    "redis_mode": "USERSECRETS_REDIS_MODE",
    "redis_wait_replicas": "USERSECRETS_REDIS_WAIT_REPLICAS",
    "redis_wait_timeout_ms": "USERSECRETS_REDIS_WAIT_TIMEOUT_MS",
}


def parser() -> argparse.ArgumentParser:
    return build_parser(ServerConfig, _ENV, "usersecrets-server", "The usersecrets gRPC server.")


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Flags win over environment variables, which win over defaults."""
    return load_settings(ServerConfig, _ENV, parser(), argv, environ)
