"""Index checker: reads a user's keys directly and reports every way the indexes disagree with the secrets.

Meant for tests and operators on a quiet store; the reads are not one snapshot. Reports name secrets and
index entries, never values.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from . import keys

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")
_USER_TAG = re.compile(rb"^" + re.escape(keys.PREFIX.encode()) + rb":\{([^}]*)\}:")


def _glob_escape(raw: bytes) -> bytes:
    return _GLOB_SPECIAL.sub(rb"\\\1", raw)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


async def check_user(redis: Redis | RedisCluster, user_id: str) -> list[str]:
    problems: list[str] = []
    prefix = keys.secret_prefix(user_id).encode()
    secret_keys = [k async for k in redis.scan_iter(match=_glob_escape(prefix) + b"*", count=1000)]
    secrets = {key[len(prefix) :]: await redis.hgetall(key) for key in secret_keys}
    listed = await redis.zrange(keys.names(user_id), 0, -1, withscores=True)
    names = {name for name, _ in listed}

    for name, score in listed:
        if score != 0:
            problems.append(f"user {user_id}: names zset scores {_text(name)!r} {score}, not 0")
    for name in sorted(names - secrets.keys()):
        problems.append(f"user {user_id}: names zset lists {_text(name)!r} but its secret key is missing")
    for name in sorted(secrets.keys() - names):
        problems.append(f"user {user_id}: secret {_text(name)!r} is missing from the names zset")

    env_index = await redis.hgetall(keys.env_index(user_id))
    file_index = await redis.hgetall(keys.file_index(user_id))
    indexes = ((b"env_name", env_index, "env index"), (b"file_path", file_index, "files index"))
    total = env_total = 0
    for name, fields in sorted(secrets.items()):
        label = f"user {user_id}: secret {_text(name)!r}"
        if fields.get(b"name") != name:
            problems.append(f"{label} has name field {_text(fields.get(b'name', b''))!r}")
        try:
            value_len = int(fields.get(b"value_len", b""))
        except ValueError:
            problems.append(f"{label} has no integer value_len")
            value_len = 0
        total += value_len
        if fields.get(b"env_name"):
            env_total += value_len
        for field, index, index_label in indexes:
            value = fields.get(field, b"")
            if value and index.get(value) != name:
                problems.append(f"{label} has {field.decode()} {_text(value)!r} not indexed to it in {index_label}")

    for field, index, index_label in indexes:
        for value, owner in sorted(index.items()):
            label = f"user {user_id}: {index_label} entry {_text(value)!r} -> {_text(owner)!r}"
            if owner not in secrets:
                problems.append(f"{label} points to a missing secret")
            elif secrets[owner].get(field) != value:
                stored = _text(secrets[owner].get(field, b""))
                problems.append(f"{label} but that secret's {field.decode()} is {stored!r}")

    usage = await redis.hgetall(keys.usage(user_id))
    for field, expected in ((b"bytes", total), (b"env_bytes", env_total)):
        recorded = int(usage.get(field, b"0"))
        if recorded != expected:
            problems.append(f"user {user_id}: usage {field.decode()} is {recorded}, values sum to {expected}")
    return problems


async def check_all(redis: Redis | RedisCluster) -> list[str]:
    """Every user in the users set plus every user that has keys under its hash tag."""
    user_ids = {_text(m) for m in await redis.smembers(keys.USERS)}
    async for key in redis.scan_iter(match=_glob_escape(f"{keys.PREFIX}:{{".encode()) + b"*", count=1000):
        found = _USER_TAG.match(key)
        if found:
            user_ids.add(_text(found.group(1)))
    problems: list[str] = []
    for user_id in sorted(user_ids):
        problems.extend(await check_user(redis, user_id))
    return problems
