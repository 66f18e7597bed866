"""SecretStore: a user's secrets in Redis, every write one atomic Lua script (key layout in keys.py).

redis-py's errors are mapped here, once: outages become StorageUnavailable, anything else is a bug and
propagates unchanged. With a WaitPolicy, every write script is followed by WAIT (durable.py); too few replica
acknowledgements are StorageUnavailable too, never a silent success.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from redis import exceptions as rexc

from . import durable, keys, limits
from .errors import AlreadyExists, LimitReached, NotFound, StorageUnavailable
from .model import SecretChanges, StoredSecret

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

    from .reads import PipelinedReads

LUA_DIR = Path(__file__).parent / "lua"

# Redis is down, starting, failing over, out of memory or too busy: the caller may retry later.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError, AuthenticationError, MaxConnectionsError, ...
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.ClusterError,  # includes ClusterDownError, MasterDownError
    rexc.TryAgainError,
    rexc.AskError,  # includes MovedError: redirects the cluster client could not follow
    rexc.OutOfMemoryError,
    rexc.InvalidResponse,
    rexc.RedisClusterUnreachableError,
    rexc.SlotNotCoveredError,
)
# A plain ResponseError with one of these codes is transient too (a long script blocks the server).
UNAVAILABLE_STATUS_CODES = frozenset({"BUSY"})

# Script answer -> (message, detail) of LimitReached.
LIMIT_MESSAGES = {
    b"count": (
        "User secrets limit reached.",
        f"A user may have at most {limits.MAX_SECRETS} secrets.",
    ),
    b"bytes": (
        "User secrets total value size limit reached.",
        f"The values of a user's secrets may total at most {limits.MAX_TOTAL_VALUE_BYTES} bytes.",
    ),
    b"env_bytes": (
        "User secrets environment value size limit reached.",
        f"The values of a user's secrets that have an env_name may total at most {limits.MAX_ENV_VALUE_BYTES} bytes.",
    ),
}


@contextmanager
def redis_errors() -> Iterator[None]:
    """The one boundary between redis-py's errors and ours. The message carries no data."""
    try:
        yield
    except durable.NotDurable as exc:
        raise StorageUnavailable(str(exc)) from exc
    except UNAVAILABLE_ERRORS as exc:
        raise StorageUnavailable() from exc
    except rexc.ResponseError as exc:
        if getattr(exc, "status_code", None) in UNAVAILABLE_STATUS_CODES:
            raise StorageUnavailable() from exc
        raise


def _raise_for(result: list[bytes]) -> None:
    status = result[0]
    if status == b"ok":
        return
    if status == b"not_found":
        raise NotFound()
    if status == b"exists":
        raise AlreadyExists(result[1].decode())
    if status == b"limit":
        message, detail = LIMIT_MESSAGES[result[1]]
        raise LimitReached(detail, message=message)
    raise RuntimeError(f"unexpected script status {status!r}")


def secret_from_hash(fields: dict[bytes, bytes]) -> StoredSecret:
    return StoredSecret(
        id=fields[b"id"].decode(),
        name=fields[b"name"].decode(),
        description=fields[b"description"].decode(),
        env_name=fields[b"env_name"].decode(),
        file_path=fields[b"file_path"].decode(),
        created_at_us=int(fields[b"created_at"]),
        updated_at_us=int(fields[b"updated_at"]),
        ciphertext=fields[b"value"],
        key_id=fields[b"key_id"].decode(),
        value_len=int(fields[b"value_len"]),
    )


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class SecretStore:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        wait: durable.WaitPolicy | None = None,
        reads: PipelinedReads | None = None,
    ) -> None:
        self._redis = redis
        self._reads = reads
        self._wait = wait or durable.WaitPolicy(0, 0)
        self._create = redis.register_script((LUA_DIR / "create.lua").read_bytes())
        self._update = redis.register_script((LUA_DIR / "update.lua").read_bytes())
        self._delete = redis.register_script((LUA_DIR / "delete.lua").read_bytes())
        self._list = redis.register_script((LUA_DIR / "list.lua").read_bytes())
        self._get = redis.register_script((LUA_DIR / "get.lua").read_bytes())
        self._replace = redis.register_script((LUA_DIR / "replace_ciphertext.lua").read_bytes())

    @staticmethod
    def _write_keys(user_id: str, name: str) -> list[str]:
        return [
            keys.secret(user_id, name),
            keys.names(user_id),
            keys.env_index(user_id),
            keys.file_index(user_id),
            keys.usage(user_id),
        ]

    async def create(self, user_id: str, secret: StoredSecret) -> StoredSecret:
        args = [
            secret.name, secret.id, secret.description, secret.env_name, secret.file_path,
            secret.created_at_us, secret.updated_at_us, secret.ciphertext, secret.key_id, secret.value_len,
            limits.MAX_SECRETS, limits.MAX_TOTAL_VALUE_BYTES, limits.MAX_ENV_VALUE_BYTES,
        ]  # fmt: skip
        with redis_errors():
            write_keys = self._write_keys(user_id, secret.name)
            result = await durable.write(self._redis, self._create, write_keys, args, self._wait)
        _raise_for(result)
        return secret

    async def _fields(self, user_id: str, name: str) -> dict[bytes, bytes]:
        key = keys.secret(user_id, name)
        with redis_errors():
            if self._reads is not None:
                found = await self._reads.hgetall(key)
            else:  # a cluster: through the ASK-safe script sender, like the writes
                found = _pairs(await durable.read(self._redis, self._get, [key], []))
        if not found:
            raise NotFound()
        return found

    async def get(self, user_id: str, name: str) -> StoredSecret:
        return secret_from_hash(await self._fields(user_id, name))

    async def list(self, user_id: str) -> list[StoredSecret]:
        with redis_errors():
            rows = await durable.read(
                self._redis, self._list, [keys.names(user_id)], [keys.secret_prefix(user_id)], self._reads
            )
        return [secret_from_hash(_pairs(row)) for row in rows]

    async def update(
        self,
        user_id: str,
        name: str,
        changes: SecretChanges,
        now_us: int,
        expected_id: str | None = None,
    ) -> StoredSecret:
        has_value = changes.ciphertext is not None
        assert has_value == (changes.key_id is not None) == (changes.value_len is not None), (
            "ciphertext, key_id and value_len change together"
        )
        args = [
            name, expected_id or "", now_us,
            *_optional(changes.description), *_optional(changes.env_name), *_optional(changes.file_path),
            int(has_value), changes.ciphertext or b"", changes.key_id or "", changes.value_len or 0,
            limits.MAX_TOTAL_VALUE_BYTES, limits.MAX_ENV_VALUE_BYTES,
        ]  # fmt: skip
        with redis_errors():
            result = await durable.write(self._redis, self._update, self._write_keys(user_id, name), args, self._wait)
        _raise_for(result)
        return secret_from_hash(_pairs(result[1:]))

    async def delete(self, user_id: str, name: str) -> None:
        with redis_errors():
            result = await durable.write(self._redis, self._delete, self._write_keys(user_id, name), [name], self._wait)
        _raise_for(result)

    async def secret_id(self, user_id: str, name: str) -> str:
        return (await self._fields(user_id, name))[b"id"].decode()

    async def replace_ciphertext(
        self,
        user_id: str,
        name: str,
        expected_id: str,
        old_ciphertext: bytes,
        new_ciphertext: bytes,
        key_id: str,
    ) -> bool:
        with redis_errors():
            done = await durable.write(
                self._redis,
                self._replace,
                [keys.secret(user_id, name)],
                [expected_id, old_ciphertext, new_ciphertext, key_id],
                self._wait,
            )
        return done == 1

    async def user_ids(self) -> builtins.list[str]:
        with redis_errors():
            members = await self._redis.smembers(keys.USERS)
        return sorted(m.decode() for m in members)


def _optional(value: str | None) -> tuple[int, str]:
    return (0, "") if value is None else (1, value)
