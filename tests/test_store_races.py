"""Concurrent writes on a real Redis: the scripts' checks hold under asyncio.gather."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis

from usersecrets.server import keys
from usersecrets.server.consistency import check_user
from usersecrets.server.errors import AlreadyExists, LimitReached
from usersecrets.server.model import SecretChanges, StoredSecret
from usersecrets.server.store import SecretStore

UID = "3b0f7a52-6c1d-4b8e-9a3f-0c2d4e6f8a10"
T0 = 1_767_323_045_000_000


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # As the server does: a blocking pool, so a burst waits for a connection instead of failing fast.
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=20, timeout=10)
    client = aioredis.Redis(connection_pool=pool)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: aioredis.Redis) -> SecretStore:
    return SecretStore(redis)


def secret(name: str, value_len: int = 1, env: str = "", file: str = "") -> StoredSecret:
    return StoredSecret(str(uuid.uuid4()), name, "", env, file, T0, T0, b"\x00" + name.encode(), "k1", value_len)


def outcome(result: object) -> str:
    if isinstance(result, AlreadyExists):
        return f"exists:{result.violations[0].field}"
    if isinstance(result, LimitReached):
        return f"limit:{result.message}"
    if isinstance(result, BaseException):
        raise result
    return "ok"


async def run_all(calls: list[Awaitable[object]]) -> Counter[str]:
    return Counter(outcome(r) for r in await asyncio.gather(*calls, return_exceptions=True))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda i: secret("same"), "name"),
        (lambda i: secret(f"n{i}", env="SAME"), "env_name"),
        (lambda i: secret(f"n{i}", file="~/same"), "file_path"),
    ],
    ids=["name", "env_name", "file_path"],
)
async def test_one_of_thirty_duplicate_creates_wins(
    store: SecretStore, redis: aioredis.Redis, make: object, field: str
) -> None:
    results = await run_all([store.create(UID, make(i)) for i in range(30)])  # type: ignore[operator]
    assert results == Counter({"ok": 1, f"exists:{field}": 29})
    assert await redis.zcard(keys.names(UID)) == 1
    assert await check_user(redis, UID) == []


async def test_fifty_of_eighty_distinct_creates_win(store: SecretStore, redis: aioredis.Redis) -> None:
    results = await run_all([store.create(UID, secret(f"s{i}", env=f"E{i}", file=f"/f{i}")) for i in range(80)])
    assert results == Counter({"ok": 50, "limit:User secrets limit reached.": 30})
    assert await redis.zcard(keys.names(UID)) == 50
    assert await redis.hlen(keys.env_index(UID)) == 50
    assert await redis.hlen(keys.file_index(UID)) == 50
    assert await check_user(redis, UID) == []


async def test_byte_limits_hold_under_races(store: SecretStore, redis: aioredis.Redis) -> None:
    # 8 * 24576 = 196608 fits in 204800; a ninth does not.
    results = await run_all([store.create(UID, secret(f"big{i}", value_len=24576)) for i in range(20)])
    assert results == Counter({"ok": 8, "limit:User secrets total value size limit reached.": 12})
    await redis.flushall()
    results = await run_all([store.create(UID, secret(f"e{i}", 8192, env=f"E{i}")) for i in range(10)])
    assert results == Counter({"ok": 3, "limit:User secrets environment value size limit reached.": 7})
    assert await redis.hgetall(keys.usage(UID)) == {b"bytes": b"24576", b"env_bytes": b"24576"}


async def test_concurrent_updates_to_one_env_name(store: SecretStore, redis: aioredis.Redis) -> None:
    for i in range(20):
        await store.create(UID, secret(f"s{i}"))
    calls = [store.update(UID, f"s{i}", SecretChanges(env_name="WANTED"), T0 + i) for i in range(20)]
    assert await run_all(calls) == Counter({"ok": 1, "exists:env_name": 19})
    assert await redis.hlen(keys.env_index(UID)) == 1
    assert await check_user(redis, UID) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_mix_leaves_indexes_consistent(store: SecretStore, redis: aioredis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(60)]
    envs, files, sizes = ["", "", "A", "B", "C", "D"], ["", "", "/a", "/b", "~/c"], [0, 10, 4096, 12000, 24576]

    def op() -> Awaitable[object]:
        name, kind = rng.choice(names), rng.random()
        if kind < 0.5:
            return store.create(UID, secret(name, rng.choice(sizes), rng.choice(envs), rng.choice(files)))
        if kind < 0.8:
            new_value = rng.random() < 0.5
            changes = SecretChanges(
                description=rng.choice([None, "d"]),
                env_name=rng.choice([None, *envs]),
                file_path=rng.choice([None, *files]),
                ciphertext=rng.randbytes(8) if new_value else None,
                key_id="k1" if new_value else None,
                value_len=rng.choice(sizes) if new_value else None,
            )
            return store.update(UID, name, changes, T0 + rng.randrange(1000))
        return store.delete(UID, name)

    seen: Counter[str] = Counter()
    for _ in range(4):
        results = await asyncio.gather(*(op() for _ in range(150)), return_exceptions=True)
        seen.update(type(r).__name__ for r in results)
        assert await check_user(redis, UID) == []
        listed = await store.list(UID)
        assert len(listed) <= 50
        assert sum(s.value_len for s in listed) <= 204800
        assert sum(s.value_len for s in listed if s.env_name) <= 24576
    # Every outcome occurred, and nothing else did (an unexpected error would show up here by name).
    assert set(seen) == {"StoredSecret", "NoneType", "AlreadyExists", "LimitReached", "NotFound"}, seen
