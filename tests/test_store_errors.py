"""Storage errors: redis-py's exceptions mapped once, at the store's boundary."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.redis_proc import RedisProcess
from tests.test_store import T0, UID, secret
from usersecrets.server import keys
from usersecrets.server.errors import UNAVAILABLE, StorageUnavailable
from usersecrets.server.model import SecretChanges
from usersecrets.server.store import SecretStore, redis_errors


async def test_stopped_redis_is_storage_unavailable(tmp_path: Path) -> None:
    proc = RedisProcess(tmp_path / "redis")
    proc.start()
    client = aioredis.from_url(proc.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    store = SecretStore(client)
    try:
        await store.create(UID, secret("s"))
    finally:
        proc.stop()
    calls = {
        "get": store.get(UID, "s"),
        "list": store.list(UID),
        "create": store.create(UID, secret("t")),
        "update": store.update(UID, "s", SecretChanges(description="d"), T0),
        "delete": store.delete(UID, "s"),
        "secret_id": store.secret_id(UID, "s"),
        "replace_ciphertext": store.replace_ciphertext(UID, "s", "i", b"a", b"b", "k"),
        "user_ids": store.user_ids(),
    }
    try:
        for call_name, call in calls.items():
            with pytest.raises(StorageUnavailable) as err:
                await call
            assert str(err.value) == UNAVAILABLE, call_name
            assert isinstance(err.value.__cause__, rexc.ConnectionError), call_name
    finally:
        await client.aclose()


UNAVAILABLE_NAMES = {
    "AuthenticationError", "AuthorizationError", "BusyLoadingError", "ConnectionError",
    "ExternalAuthProviderError", "MaxClientsReachedError", "MaxConnectionsError", "TimeoutError",
    "ReadOnlyError", "ClusterError", "ClusterDownError", "MasterDownError", "TryAgainError", "AskError",
    "MovedError", "OutOfMemoryError", "InvalidResponse", "RedisClusterUnreachableError",
    "SlotNotCoveredError",
}  # fmt: skip
# Raised only by code that misuses Redis (a script bug, a wrong command, a missing ACL grant): not retryable.
PROGRAMMING_NAMES = {
    "RedisError", "ResponseError", "DataError", "NoScriptError", "ExecAbortError", "WatchError",
    "PubSubError", "LockError", "LockNotOwnedError", "NoPermissionError", "ModuleError",
    "AuthenticationWrongNumberOfArgsError", "ClusterCrossSlotError", "CrossSlotTransactionError",
    "InvalidPipelineStack", "ChildDeadlockedError", "IncorrectPolicyType", "NoSuchFieldsetError",
    "RedisClusterException",
}  # fmt: skip
REDIS_EXCEPTIONS = sorted(
    (c for _, c in inspect.getmembers(rexc, inspect.isclass) if issubclass(c, BaseException)),
    key=lambda c: c.__name__,
)


def test_every_redis_exception_is_classified() -> None:
    names = {c.__name__ for c in REDIS_EXCEPTIONS}
    assert names - UNAVAILABLE_NAMES - PROGRAMMING_NAMES == set(), "unclassified redis-py exceptions"
    assert not UNAVAILABLE_NAMES & PROGRAMMING_NAMES


@pytest.mark.parametrize("exc_type", REDIS_EXCEPTIONS, ids=lambda c: c.__name__)
def test_redis_exception_mapping(exc_type: type[Exception]) -> None:
    # Redirect errors parse their text as "<slot> <host:port>".
    text = "3999 secret-looking:6381" if issubclass(exc_type, rexc.AskError) else "secret-looking detail"
    original = exc_type(text)
    if exc_type.__name__ in UNAVAILABLE_NAMES:
        with pytest.raises(StorageUnavailable) as err, redis_errors():
            raise original
        assert err.value.__cause__ is original
        assert str(err.value) == UNAVAILABLE
        assert "secret-looking" not in str(err.value)
    else:
        with pytest.raises(exc_type) as passed, redis_errors():
            raise original
        assert passed.value is original


def test_busy_response_is_unavailable() -> None:
    busy = rexc.ResponseError("Redis is busy running a script.", status_code="BUSY")
    with pytest.raises(StorageUnavailable), redis_errors():
        raise busy


async def test_a_listed_name_without_its_secret_is_unavailable_not_a_partial_list(redis_url: str) -> None:
    """What a half-moved cluster slot looks like from one node; list.lua answers TRYAGAIN, never a short list."""
    client = aioredis.from_url(redis_url)
    try:
        store = SecretStore(client)
        await store.create(UID, secret("a"))
        await store.create(UID, secret("b"))
        await client.delete(keys.secret(UID, "a"))
        with pytest.raises(StorageUnavailable) as err:
            await store.list(UID)
        assert isinstance(err.value.__cause__, rexc.TryAgainError)
    finally:
        await client.aclose()
