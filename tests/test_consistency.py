"""The index checker: silent on a consistent store, and names every kind of damage exactly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from usersecrets.server import keys
from usersecrets.server.consistency import check_all, check_user
from usersecrets.server.model import SecretChanges, StoredSecret
from usersecrets.server.store import SecretStore

U = "user-1"
T0 = 1_767_323_045_000_000


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: aioredis.Redis) -> SecretStore:
    return SecretStore(redis)


def secret(name: str, value_len: int, env: str = "", file: str = "") -> StoredSecret:
    return StoredSecret(str(uuid.uuid4()), name, "", env, file, T0, T0, b"\x00\xff", "k1", value_len)


async def seed(store: SecretStore, uid: str = U) -> None:
    await store.create(uid, secret("a", 5, env="A", file="/a"))
    await store.create(uid, secret("b", 7))
    await store.create(uid, secret("c", 3, env="C"))


async def test_consistent_store_has_no_problems(store: SecretStore, redis: aioredis.Redis) -> None:
    assert await check_user(redis, U) == []
    await seed(store)
    await store.update(U, "b", SecretChanges(env_name="B", file_path="/b"), T0 + 1)
    await store.update(U, "a", SecretChanges(env_name="", ciphertext=b"x", key_id="k", value_len=9), T0 + 1)
    await store.delete(U, "c")
    assert await check_user(redis, U) == []
    assert await check_all(redis) == []


Damage = Callable[[aioredis.Redis], Awaitable[object]]

CASES: list[tuple[str, Damage, list[str]]] = [
    (
        "secret-key-deleted",
        lambda r: r.delete(keys.secret(U, "b")),
        [
            "user user-1: names zset lists 'b' but its secret key is missing",
            "user user-1: usage bytes is 15, values sum to 8",
        ],
    ),
    (
        "name-missing-from-zset",
        lambda r: r.zrem(keys.names(U), "a"),
        ["user user-1: secret 'a' is missing from the names zset"],
    ),
    (
        "zset-score-not-zero",
        lambda r: r.zadd(keys.names(U), {"b": 1}),
        ["user user-1: names zset scores 'b' 1.0, not 0"],
    ),
    (
        "env-entry-missing",
        lambda r: r.hdel(keys.env_index(U), "A"),
        ["user user-1: secret 'a' has env_name 'A' not indexed to it in env index"],
    ),
    (
        "file-entry-missing",
        lambda r: r.hdel(keys.file_index(U), "/a"),
        ["user user-1: secret 'a' has file_path '/a' not indexed to it in files index"],
    ),
    (
        "env-entry-to-missing-secret",
        lambda r: r.hset(keys.env_index(U), "GHOST", "zzz"),
        ["user user-1: env index entry 'GHOST' -> 'zzz' points to a missing secret"],
    ),
    (
        "file-entry-to-secret-without-it",
        lambda r: r.hset(keys.file_index(U), "/b", "b"),
        ["user user-1: files index entry '/b' -> 'b' but that secret's file_path is ''"],
    ),
    (
        "env-entry-to-wrong-secret",
        lambda r: r.hset(keys.env_index(U), "A", "c"),
        [
            "user user-1: secret 'a' has env_name 'A' not indexed to it in env index",
            "user user-1: env index entry 'A' -> 'c' but that secret's env_name is 'C'",
        ],
    ),
    (
        "usage-env-bytes-wrong",
        lambda r: r.hset(keys.usage(U), "env_bytes", 9),
        ["user user-1: usage env_bytes is 9, values sum to 8"],
    ),
    (
        "usage-missing",
        lambda r: r.delete(keys.usage(U)),
        ["user user-1: usage bytes is 0, values sum to 15", "user user-1: usage env_bytes is 0, values sum to 8"],
    ),
    (
        "value-len-changed",
        lambda r: r.hset(keys.secret(U, "a"), "value_len", 6),
        ["user user-1: usage bytes is 15, values sum to 16", "user user-1: usage env_bytes is 8, values sum to 9"],
    ),
    (
        "name-field-differs",
        lambda r: r.hset(keys.secret(U, "b"), "name", "x"),
        ["user user-1: secret 'b' has name field 'x'"],
    ),
]


@pytest.mark.parametrize(("damage", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_each_damage_is_reported(
    store: SecretStore, redis: aioredis.Redis, damage: Damage, expected: list[str]
) -> None:
    await seed(store)
    await damage(redis)
    assert await check_user(redis, U) == expected
    assert await check_all(redis) == expected


async def test_check_all_covers_listed_and_tagged_users(store: SecretStore, redis: aioredis.Redis) -> None:
    await seed(store, "u-listed")
    await seed(store, "u-unlisted")
    await redis.sadd(keys.USERS, "u-listed", "u-empty")
    await redis.zrem(keys.names("u-listed"), "c")
    await redis.hset(keys.usage("u-unlisted"), "bytes", 1)
    assert await check_all(redis) == [
        "user u-listed: secret 'c' is missing from the names zset",
        "user u-unlisted: usage bytes is 1, values sum to 15",
    ]


async def test_user_ids_with_glob_characters_are_matched_literally(store: SecretStore, redis: aioredis.Redis) -> None:
    await seed(store, "a*")
    await seed(store, "ab")
    await redis.delete(keys.secret("ab", "b"))
    assert await check_user(redis, "a*") == []
    assert await check_user(redis, "ab") == [
        "user ab: names zset lists 'b' but its secret key is missing",
        "user ab: usage bytes is 15, values sum to 8",
    ]
