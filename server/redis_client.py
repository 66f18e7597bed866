"""The one way this project opens Redis: bounded pool, bounded waits, one quick retry.

redis-py's default (10 retries with backoff) would hold a caller for seconds while Redis is down; a secrets
service should answer 503 at once instead. A single retry still covers a connection that went stale across a
Redis restart.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def quick_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1)


def connect(url: str, *, timeout: float = 5.0, max_connections: int = 64) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,  # waiting for a free connection
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=quick_retry(),
    )
    return Redis(connection_pool=pool, decode_responses=False, retry=quick_retry())
