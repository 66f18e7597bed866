from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.support.redis_proc import free_port
from usersecrets.server import errors, keys
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import Principal, User


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.from_url(redis_url, decode_responses=False)
    yield c
    await c.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ids(client: aioredis.Redis, clock: Clock) -> IdentityStore:
    return IdentityStore(client, clock=clock)


# --- users -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username",
    [
        "",
        "-alice",
        "alice-",
        "al--ice",
        "al_ice",
        "al ice",
        "al.ice",
        "ålice",
        "alice\n",
        "a" * 33,
        "a-" * 16,
    ],
    ids=[
        "empty",
        "leading-hyphen",
        "trailing-hyphen",
        "double-hyphen",
        "underscore",
        "space",
        "dot",
        "non-ascii",
        "newline",
        "33-chars",
        "trailing-hyphen-32",
    ],
)
async def test_bad_usernames_are_refused_and_nothing_stored(
    ids: IdentityStore, client: aioredis.Redis, username: str
) -> None:
    with pytest.raises(ValueError, match="invalid username"):
        await ids.create_user(username)
    assert await client.keys("*") == []


@pytest.mark.parametrize("username", ["a", "A1", "alice-bob-2", "x" * 32], ids=["one", "mixed", "hyphens", "32"])
async def test_good_usernames(ids: IdentityStore, client: aioredis.Redis, clock: Clock, username: str) -> None:
    user = await ids.create_user(username)
    assert user == User(id=user.id, username=username, roles=(), created_at_us=1_700_000_000_000_000)
    assert uuid.UUID(user.id).version == 4
    assert await client.hgetall(keys.user(user.id)) == {
        b"id": user.id.encode(),
        b"username": username.encode(),
        b"roles": b"",
        b"created_at": b"1700000000000000",
    }
    assert await client.get(keys.username(username)) == user.id.encode()
    assert await client.smembers(keys.USERS) == {user.id.encode()}
    assert await ids.user_by_id(user.id) == user
    assert await ids.user_by_name(username.upper()) == user


async def test_duplicate_username_case_insensitive(ids: IdentityStore, client: aioredis.Redis) -> None:
    alice = await ids.create_user("Alice")
    for other in ["alice", "ALICE", "Alice"]:
        with pytest.raises(ValueError, match="username is already taken"):
            await ids.create_user(other)
    assert await client.smembers(keys.USERS) == {alice.id.encode()}
    assert sorted(await client.keys("*")) == sorted(
        [keys.USERS.encode(), keys.user(alice.id).encode(), b"us:username:alice"]
    )
    assert await ids.user_by_name("aLiCe") == alice


async def test_concurrent_creates_of_one_name_have_one_winner(ids: IdentityStore, client: aioredis.Redis) -> None:
    names = ["Bob", "bob", "BOB", "bOb", "Bob"] * 2
    results = await asyncio.gather(*(ids.create_user(n) for n in names), return_exceptions=True)
    winners = [r for r in results if isinstance(r, User)]
    assert len(winners) == 1
    assert all(isinstance(r, ValueError) for r in results if not isinstance(r, User))
    assert await client.smembers(keys.USERS) == {winners[0].id.encode()}
    assert len(await client.keys("us:user:*")) == 1


async def test_unknown_users_are_none(ids: IdentityStore) -> None:
    assert await ids.user_by_id(str(uuid.uuid4())) is None
    assert await ids.user_by_name("nobody") is None
    assert await ids.user_by_name("") is None
    assert await ids.user_by_name("x" * 40) is None


async def test_roles_dedupe_and_grant(ids: IdentityStore, client: aioredis.Redis) -> None:
    user = await ids.create_user("carol", roles=["admin", "secret-injector", "admin"])
    assert user.roles == ("admin", "secret-injector")
    assert await client.hget(keys.user(user.id), "roles") == b"admin,secret-injector"
    granted = await ids.grant_role(user.id, "ops")
    assert granted.roles == ("admin", "secret-injector", "ops")
    again = await ids.grant_role(user.id, "admin")
    assert again.roles == ("admin", "secret-injector", "ops")
    assert await ids.user_by_id(user.id) == again


@pytest.mark.parametrize(
    "role", ["", "a,b", " admin", "-x", "r" * 65], ids=["empty", "comma", "space", "hyphen", "long"]
)
async def test_bad_roles_are_refused(ids: IdentityStore, client: aioredis.Redis, role: str) -> None:
    with pytest.raises(ValueError, match="invalid role"):
        await ids.create_user("dave", roles=[role])
    assert await client.keys("*") == []
    user = await ids.create_user("dave")
    with pytest.raises(ValueError, match="invalid role"):
        await ids.grant_role(user.id, role)
    assert await client.hget(keys.user(user.id), "roles") == b""


async def test_grant_role_to_unknown_user(ids: IdentityStore, client: aioredis.Redis) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(LookupError, match="no such user"):
        await ids.grant_role(missing, "admin")
    assert await client.exists(keys.user(missing)) == 0


# --- tokens ----------------------------------------------------------------------------------------


async def token_for(ids: IdentityStore, lifetime: float = 3600) -> tuple[User, str, str]:
    user = await ids.create_user("erin")
    token_id, token = await ids.create_token(user.id, lifetime)
    return user, token_id, token


async def test_token_shape_and_stored_state(ids: IdentityStore, client: aioredis.Redis) -> None:
    user, token_id, token = await token_for(ids, lifetime=3600)
    assert re.fullmatch(r"[a-zA-Z0-9]{10}-[a-zA-Z0-9]{22}", token), token
    secret = token.split("-", 1)[1]
    assert token.startswith(token_id + "-")
    assert await client.hgetall(keys.token(token_id)) == {
        b"user_id": user.id.encode(),
        b"hash": hashlib.sha256(secret.encode()).hexdigest().encode(),
        b"created_at": b"1700000000000000",
        b"expires_at": b"1700003600000000",
    }
    assert 3_590_000 < await client.pttl(keys.token(token_id)) <= 3_600_000
    dump = b"".join([k + b"".join((await client.hgetall(k)).values()) for k in await client.keys("us:token:*")])
    assert secret.encode() not in dump


async def test_valid_token_authenticates(ids: IdentityStore) -> None:
    user, token_id, token = await token_for(ids)
    assert await ids.authenticate(token) == Principal(user_id=user.id, token_id=token_id, expires_in=3600.0)


async def test_authenticate_is_one_round_trip(ids: IdentityStore, client: aioredis.Redis) -> None:
    _, _, token = await token_for(ids)
    await client.config_resetstat()
    await ids.authenticate(token)
    stats = await client.info("commandstats")
    assert stats["cmdstat_hgetall"]["calls"] == 1
    assert {k for k in stats if not k.startswith("cmdstat_config")} == {"cmdstat_hgetall"}


def assert_unauthenticated(exc: errors.Unauthenticated, detail: str, token: str) -> None:
    assert exc.message == errors.SIGNED_OUT
    assert exc.detail == detail
    for part in [token, *token.split("-")]:
        if len(part) >= 4:
            assert part not in str(exc), f"{part!r} leaked into {exc}"
            assert part not in repr(exc)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "abcdefghij",
        "abcdefghij-",
        "abcdefghij-abcdefghijklmnopqrstuv-x",
        "abcdefghi-abcdefghijklmnopqrstuvw",
        "abcdefghijk-abcdefghijklmnopqrstu",
        "abcdefghij-abcdefghijklmnopqrstu",
        "abcdefghij-abcdefghijklmnopqrstuvw",
        "abcdefghij_abcdefghijklmnopqrstuv",
        "abcdefghij-abcdefghijklmnopqrstuv\n",
        " abcdefghij-abcdefghijklmnopqrstuv",
        "abcdefghij-abcdefghijklmnopqrstüv",
        "Bearer abcdefghij-abcdefghijklmnopqrstuv",
    ],
    ids=[
        "empty",
        "short",
        "id-only",
        "empty-secret",
        "three-parts",
        "id-9",
        "id-11",
        "secret-21",
        "secret-23",
        "underscore",
        "newline",
        "leading-space",
        "non-ascii",
        "bearer-prefix",
    ],
)
async def test_malformed_tokens(ids: IdentityStore, token: str) -> None:
    with pytest.raises(errors.Unauthenticated) as info:
        await ids.authenticate(token)
    assert_unauthenticated(info.value, "Invalid API key format.", token)


async def test_unknown_token_id(ids: IdentityStore) -> None:
    await token_for(ids)
    token = "ZZZZZZZZZZ-abcdefghijklmnopqrstuv"
    with pytest.raises(errors.Unauthenticated) as info:
        await ids.authenticate(token)
    assert_unauthenticated(info.value, "API key is invalid.", token)


async def test_wrong_secret(ids: IdentityStore) -> None:
    _, token_id, token = await token_for(ids)
    wrong = f"{token_id}-{'A' * 22}"
    assert wrong != token
    with pytest.raises(errors.Unauthenticated) as info:
        await ids.authenticate(wrong)
    assert_unauthenticated(info.value, "API key is invalid.", wrong)


async def test_expired_by_clock(ids: IdentityStore, clock: Clock) -> None:
    _, token_id, token = await token_for(ids, lifetime=60)
    clock.now += 59.999
    await ids.authenticate(token)
    clock.now += 0.001
    with pytest.raises(errors.Unauthenticated) as info:
        await ids.authenticate(token)
    assert_unauthenticated(info.value, "API key expired.", token)
    # Expiry is not revealed to a caller who lacks the secret.
    with pytest.raises(errors.Unauthenticated, match=r"API key is invalid\."):
        await ids.authenticate(f"{token_id}-{'B' * 22}")


async def test_redis_expiry_removes_the_token(client: aioredis.Redis) -> None:
    ids = IdentityStore(client)
    user = await ids.create_user("frank")
    token_id, token = await ids.create_token(user.id, 0.05)
    await asyncio.sleep(0.12)
    assert await client.exists(keys.token(token_id)) == 0
    with pytest.raises(errors.Unauthenticated, match=r"API key is invalid\."):
        await ids.authenticate(token)


async def test_revoked(ids: IdentityStore, client: aioredis.Redis) -> None:
    _, token_id, token = await token_for(ids)
    assert await ids.revoke_token(token_id) is True
    assert await client.exists(keys.token(token_id)) == 0
    with pytest.raises(errors.Unauthenticated) as info:
        await ids.authenticate(token)
    assert_unauthenticated(info.value, "API key is invalid.", token)
    assert await ids.revoke_token(token_id) is False


async def test_tokens_are_distinct(ids: IdentityStore) -> None:
    user = await ids.create_user("gina")
    tokens = [await ids.create_token(user.id, 60) for _ in range(20)]
    assert len({t for _, t in tokens}) == len({i for i, _ in tokens}) == 20


@pytest.mark.parametrize("lifetime", [0, -1, float("nan"), float("inf")], ids=["zero", "negative", "nan", "inf"])
async def test_bad_lifetime(ids: IdentityStore, client: aioredis.Redis, lifetime: float) -> None:
    user = await ids.create_user("hank")
    with pytest.raises(ValueError, match="lifetime"):
        await ids.create_token(user.id, lifetime)
    assert await client.keys("us:token:*") == []


async def test_token_for_unknown_user(ids: IdentityStore, client: aioredis.Redis) -> None:
    with pytest.raises(LookupError, match="no such user"):
        await ids.create_token(str(uuid.uuid4()), 60)
    assert await client.keys("us:token:*") == []


# --- storage errors --------------------------------------------------------------------------------


async def test_unreachable_redis_is_storage_unavailable() -> None:
    down = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    ids = IdentityStore(down)
    token = "abcdefghij-abcdefghijklmnopqrstuv"
    try:
        calls = [
            ids.authenticate(token),
            ids.create_user("ivan"),
            ids.user_by_id("x"),
            ids.user_by_name("ivan"),
            ids.grant_role("x", "admin"),
            ids.create_token("x", 60),
            ids.revoke_token("abcdefghij"),
        ]
        for call in calls:
            with pytest.raises(errors.StorageUnavailable) as info:
                await call
            assert info.value.message == errors.UNAVAILABLE
            assert token not in str(info.value)
    finally:
        await down.aclose()
