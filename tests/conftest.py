from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.redis_proc import RedisProcess
from tests.support.stack import ServerStack, running_server


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One real Redis for the session; each test gets it flushed."""
    proc = RedisProcess(Path(tmp_path_factory.mktemp("redis")))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
async def redis_url(redis_proc: RedisProcess) -> AsyncIterator[str]:
    client = aioredis.from_url(redis_proc.url)
    await client.flushall()
    await client.aclose()
    yield redis_proc.url


@pytest.fixture
async def server_stack(redis_url: str) -> AsyncIterator[ServerStack]:
    """A real gRPC server over a flushed real Redis."""
    async with running_server(redis_url) as stack:
        yield stack


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A Redis of the test's own, to kill, restart or pause (the session's Redis is never disturbed);
    append-only with fsync always, so an acknowledged write is on disk."""
    proc = RedisProcess(tmp_path / "redis", appendonly=True)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
