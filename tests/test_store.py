"""SecretStore against a real Redis: layout, uniqueness, limits, timestamps, ordering, restarts, outages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from usersecrets.server import keys, limits
from usersecrets.server.errors import AlreadyExists, LimitReached, NotFound
from usersecrets.server.model import SecretChanges, StoredSecret
from usersecrets.server.store import SecretStore

UID = "8d4c0c8e-2f0a-4a57-9d8e-5d0b4a0b7c11"
OTHER = "1f1e2d3c-0000-4000-8000-000000000002"
T0 = 1_767_323_045_123_456  # a microsecond timestamp past %.14g precision


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: aioredis.Redis) -> SecretStore:
    return SecretStore(redis)


def secret(name: str, value_len: int = 1, env: str = "", file: str = "", **kw: object) -> StoredSecret:
    fields: dict[object, object] = {
        "id": str(uuid.uuid4()),
        "name": name,
        "description": f"about {name}",
        "env_name": env,
        "file_path": file,
        "created_at_us": T0,
        "updated_at_us": T0,
        "ciphertext": b"\x00\xff" + name.encode() + b"\r\n\x00",
        "key_id": "k1",
        "value_len": value_len,
    }
    fields.update(kw)
    return StoredSecret(**fields)  # type: ignore[arg-type]


async def usage(redis: aioredis.Redis, uid: str = UID) -> dict[bytes, bytes]:
    return await redis.hgetall(keys.usage(uid))


# --- layout and round trips -------------------------------------------------------------------------------


async def test_create_writes_exact_layout_and_get_round_trips(store: SecretStore, redis: aioredis.Redis) -> None:
    s = secret("api key", value_len=7, env="API_KEY", file="~/.api", ciphertext=b"\x00\xff\x80binary\x00")
    assert await store.create(UID, s) == s

    assert await redis.hgetall(keys.secret(UID, "api key")) == {
        b"id": s.id.encode(),
        b"name": b"api key",
        b"description": b"about api key",
        b"env_name": b"API_KEY",
        b"file_path": b"~/.api",
        b"created_at": str(T0).encode(),
        b"updated_at": str(T0).encode(),
        b"value": b"\x00\xff\x80binary\x00",
        b"key_id": b"k1",
        b"value_len": b"7",
    }
    assert await redis.zrange(keys.names(UID), 0, -1, withscores=True) == [(b"api key", 0.0)]
    assert await redis.hgetall(keys.env_index(UID)) == {b"API_KEY": b"api key"}
    assert await redis.hgetall(keys.file_index(UID)) == {b"~/.api": b"api key"}
    assert await usage(redis) == {b"bytes": b"7", b"env_bytes": b"7"}
    assert await store.get(UID, "api key") == s
    assert await store.secret_id(UID, "api key") == s.id
    assert await store.list(UID) == [s]


async def test_missing_secret_is_not_found_everywhere(store: SecretStore) -> None:
    await store.create(OTHER, secret("x"))  # another user's secret of that name does not count
    with pytest.raises(NotFound):
        await store.get(UID, "x")
    with pytest.raises(NotFound):
        await store.secret_id(UID, "x")
    with pytest.raises(NotFound):
        await store.update(UID, "x", SecretChanges(description="d"), T0)
    with pytest.raises(NotFound):
        await store.delete(UID, "x")
    assert await store.list(UID) == []
    assert await store.replace_ciphertext(UID, "x", "id", b"a", b"b", "k2") is False


async def test_users_are_isolated(store: SecretStore) -> None:
    a, b = secret("same", env="SAME", file="/same"), secret("same", env="SAME", file="/same")
    await store.create(UID, a)
    await store.create(OTHER, b)
    assert await store.list(UID) == [a]
    assert await store.list(OTHER) == [b]


NAMES = ["é", "a", "B", "a b", "100%", "Ä", "_", "a%20b", "日本", "Z z"]


async def test_list_is_sorted_by_name_bytes(store: SecretStore) -> None:
    for name in NAMES:
        await store.create(UID, secret(name))
    listed = [s.name for s in await store.list(UID)]
    assert listed == sorted(NAMES, key=lambda n: n.encode())
    assert listed[:3] == ["100%", "B", "Z z"]
    assert listed.index("B") < listed.index("a") < listed.index("é")


@pytest.mark.parametrize("name", ["with space", "100% sure", "a%2Fb", "ünïcødé 日本", " lead", "\\*?[x]"])
async def test_unusual_names_work_end_to_end(store: SecretStore, redis: aioredis.Redis, name: str) -> None:
    s = secret(name, env="E", file="/f")
    await store.create(UID, s)
    assert await redis.exists(keys.secret(UID, name)) == 1
    assert await store.get(UID, name) == s
    updated = await store.update(UID, name, SecretChanges(description="new"), T0 + 5)
    assert (updated.name, updated.description) == (name, "new")
    await store.delete(UID, name)
    assert await redis.keys("*") == []


# --- uniqueness --------------------------------------------------------------------------------------------

EXISTING = dict(name="taken", env="TAKEN", file="/taken")


@pytest.mark.parametrize(
    ("name", "env", "file", "field"),
    [
        ("taken", "", "", "name"),
        ("other", "TAKEN", "", "env_name"),
        ("other", "", "/taken", "file_path"),
        ("taken", "TAKEN", "/taken", "name"),
        ("other", "TAKEN", "/taken", "env_name"),
        ("taken", "", "/taken", "name"),
    ],
    ids=["name", "env", "file", "all-three-name-first", "env-before-file", "name-before-file"],
)
async def test_create_conflicts(store: SecretStore, name: str, env: str, file: str, field: str) -> None:
    first = secret(EXISTING["name"], env=EXISTING["env"], file=EXISTING["file"])
    await store.create(UID, first)
    with pytest.raises(AlreadyExists) as err:
        await store.create(UID, secret(name, env=env, file=file))
    assert err.value.violations[0].field == field
    assert err.value.violations[0].detail == f"{field} already in use"
    assert await store.list(UID) == [first]


async def test_uniqueness_is_case_sensitive_and_ignores_empty(store: SecretStore) -> None:
    await store.create(UID, secret("a", env="FOO", file="/a"))
    await store.create(UID, secret("A", env="foo", file="/A"))
    await store.create(UID, secret("b"))
    await store.create(UID, secret("c"))  # two empty env_names and file_paths do not collide
    assert [s.name for s in await store.list(UID)] == ["A", "a", "b", "c"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (SecretChanges(env_name="TAKEN"), "env_name"),
        (SecretChanges(file_path="/taken"), "file_path"),
        (SecretChanges(env_name="TAKEN", file_path="/taken"), "env_name"),
    ],
    ids=["env", "file", "env-before-file"],
)
async def test_update_conflicts(store: SecretStore, redis: aioredis.Redis, changes: SecretChanges, field: str) -> None:
    await store.create(UID, secret("taken", env="TAKEN", file="/taken"))
    mine = secret("mine", env="MINE", file="/mine")
    await store.create(UID, mine)
    with pytest.raises(AlreadyExists) as err:
        await store.update(UID, "mine", changes, T0 + 1)
    assert err.value.violations[0].field == field
    assert await store.get(UID, "mine") == mine
    assert await redis.hgetall(keys.env_index(UID)) == {b"TAKEN": b"taken", b"MINE": b"mine"}


async def test_update_to_own_env_and_file_is_fine(store: SecretStore) -> None:
    await store.create(UID, secret("mine", env="MINE", file="/mine"))
    updated = await store.update(UID, "mine", SecretChanges(env_name="MINE", file_path="/mine"), T0 + 1)
    assert (updated.env_name, updated.file_path) == ("MINE", "/mine")


async def test_update_moves_index_entries(store: SecretStore, redis: aioredis.Redis) -> None:
    await store.create(UID, secret("s", value_len=10, env="OLD", file="/old"))
    await store.update(UID, "s", SecretChanges(env_name="NEW", file_path="/new"), T0 + 1)
    assert await redis.hgetall(keys.env_index(UID)) == {b"NEW": b"s"}
    assert await redis.hgetall(keys.file_index(UID)) == {b"/new": b"s"}
    await store.update(UID, "s", SecretChanges(env_name="", file_path=""), T0 + 2)
    assert await redis.hgetall(keys.env_index(UID)) == {}
    assert await redis.hgetall(keys.file_index(UID)) == {}
    assert await usage(redis) == {b"bytes": b"10", b"env_bytes": b"0"}
    await store.create(UID, secret("t", env="OLD", file="/old"))  # the freed targets are reusable


# --- limits ------------------------------------------------------------------------------------------------

COUNT = ("User secrets limit reached.", "A user may have at most 50 secrets.")
BYTES = (
    "User secrets total value size limit reached.",
    "The values of a user's secrets may total at most 204800 bytes.",
)
ENV_BYTES = (
    "User secrets environment value size limit reached.",
    "The values of a user's secrets that have an env_name may total at most 24576 bytes.",
)


def limit_of(err: pytest.ExceptionInfo[LimitReached]) -> tuple[str, str]:
    return err.value.message, err.value.detail


def test_limit_constants() -> None:
    assert (limits.MAX_SECRETS, limits.MAX_TOTAL_VALUE_BYTES, limits.MAX_ENV_VALUE_BYTES) == (
        50,
        204800,
        24576,
    )
    assert (limits.MAX_VALUE_BYTES, limits.MAX_NAME_BYTES, limits.MAX_ENV_NAME_BYTES) == (24576, 256, 256)
    assert (limits.MAX_FILE_PATH_BYTES, limits.MAX_DESCRIPTION_BYTES) == (4096, 4096)


async def test_count_limit_boundary(store: SecretStore, redis: aioredis.Redis) -> None:
    for i in range(50):
        await store.create(UID, secret(f"s{i:02}"))
    with pytest.raises(LimitReached) as err:
        await store.create(UID, secret("s50"))
    assert limit_of(err) == COUNT
    assert await redis.zcard(keys.names(UID)) == 50
    assert await redis.exists(keys.secret(UID, "s50")) == 0
    with pytest.raises(AlreadyExists):  # uniqueness is checked before limits
        await store.create(UID, secret("s00"))
    await store.delete(UID, "s00")
    await store.create(UID, secret("s50"))


async def test_total_bytes_limit_boundary(store: SecretStore, redis: aioredis.Redis) -> None:
    for i in range(8):
        await store.create(UID, secret(f"big{i}", value_len=24576))
    await store.create(UID, secret("rest", value_len=204800 - 8 * 24576))
    assert await usage(redis) == {b"bytes": b"204800"}
    with pytest.raises(LimitReached) as err:
        await store.create(UID, secret("one more", value_len=1))
    assert limit_of(err) == BYTES
    await store.create(UID, secret("empty", value_len=0))
    assert await usage(redis) == {b"bytes": b"204800"}


async def test_env_bytes_limit_boundary(store: SecretStore, redis: aioredis.Redis) -> None:
    await store.create(UID, secret("a", value_len=24000, env="A"))
    await store.create(UID, secret("b", value_len=576, env="B"))
    with pytest.raises(LimitReached) as err:
        await store.create(UID, secret("c", value_len=1, env="C"))
    assert limit_of(err) == ENV_BYTES
    await store.create(UID, secret("d", value_len=5000))  # no env_name: only the total counts
    assert await usage(redis) == {b"bytes": b"29576", b"env_bytes": b"24576"}


async def test_limit_order_count_then_bytes_then_env(store: SecretStore) -> None:
    await store.create(UID, secret("env", value_len=24576, env="ENV"))
    for i in range(7):
        await store.create(UID, secret(f"big{i}", value_len=24576))
    await store.create(UID, secret("rest", value_len=8192))  # total now exactly 204800
    with pytest.raises(LimitReached) as err:
        await store.create(UID, secret("x", value_len=1, env="X"))
    assert limit_of(err) == BYTES
    for i in range(41):
        await store.create(UID, secret(f"zero{i}", value_len=0))
    with pytest.raises(LimitReached) as err:
        await store.create(UID, secret("x", value_len=1, env="X"))
    assert limit_of(err) == COUNT


def value_change(n: int) -> SecretChanges:
    return SecretChanges(ciphertext=b"\x01" * 3, key_id="k2", value_len=n)


async def test_update_is_measured_without_double_count(store: SecretStore, redis: aioredis.Redis) -> None:
    await store.create(UID, secret("env", value_len=24576, env="ENV"))
    for i in range(7):
        await store.create(UID, secret(f"big{i}", value_len=24576))
    await store.create(UID, secret("rest", value_len=8192))
    assert await usage(redis) == {b"bytes": b"204800", b"env_bytes": b"24576"}

    await store.update(UID, "env", value_change(24576), T0 + 1)  # same size: fits exactly
    await store.update(UID, "rest", value_change(8192), T0 + 1)
    with pytest.raises(LimitReached) as err:
        await store.update(UID, "rest", value_change(8193), T0 + 1)
    assert limit_of(err) == BYTES
    await store.update(UID, "rest", value_change(0), T0 + 1)
    with pytest.raises(LimitReached) as err:
        await store.update(UID, "env", value_change(24577), T0 + 1)
    assert limit_of(err) == ENV_BYTES
    with pytest.raises(LimitReached) as err:
        await store.update(UID, "big0", SecretChanges(env_name="BIG"), T0 + 1)
    assert limit_of(err) == ENV_BYTES
    await store.update(UID, "env", SecretChanges(env_name=""), T0 + 1)
    await store.update(UID, "big0", SecretChanges(env_name="BIG"), T0 + 1)
    assert await usage(redis) == {b"bytes": b"196608", b"env_bytes": b"24576"}
    assert await redis.hgetall(keys.env_index(UID)) == {b"BIG": b"big0"}


# --- update semantics --------------------------------------------------------------------------------------


async def test_update_fields_and_timestamps(store: SecretStore, redis: aioredis.Redis) -> None:
    s = secret("s", value_len=3, env="E", file="/f")
    await store.create(UID, s)

    later = await store.update(UID, "s", SecretChanges(description=""), T0 + 1000)
    assert later == StoredSecret(s.id, "s", "", "E", "/f", T0, T0 + 1000, s.ciphertext, "k1", 3)
    # A clock that went back still moves updated_at forward.
    back = await store.update(UID, "s", SecretChanges(file_path="~/g"), T0 - 5_000_000)
    assert (back.updated_at_us, back.created_at_us, back.file_path) == (T0 + 1001, T0, "~/g")
    same = await store.update(UID, "s", SecretChanges(), T0 + 1001)
    assert same.updated_at_us == T0 + 1002

    new_value = await store.update(UID, "s", SecretChanges(ciphertext=b"\xff\x00new", key_id="k2", value_len=0), T0 + 9)
    assert new_value == StoredSecret(s.id, "s", "", "E", "~/g", T0, T0 + 1003, b"\xff\x00new", "k2", 0)
    assert await store.get(UID, "s") == new_value
    assert await redis.hget(keys.secret(UID, "s"), "updated_at") == str(T0 + 1003).encode()
    assert await usage(redis) == {b"bytes": b"0", b"env_bytes": b"0"}


async def test_update_expected_id(store: SecretStore) -> None:
    s = secret("s")
    await store.create(UID, s)
    with pytest.raises(NotFound):
        await store.update(UID, "s", SecretChanges(description="x"), T0 + 1, expected_id=str(uuid.uuid4()))
    assert await store.get(UID, "s") == s
    updated = await store.update(UID, "s", SecretChanges(description="x"), T0 + 1, expected_id=s.id)
    assert updated.description == "x"


async def test_delete_frees_everything(store: SecretStore, redis: aioredis.Redis) -> None:
    await store.create(UID, secret("keep", value_len=5, env="KEEP"))
    await store.create(UID, secret("s", value_len=24571, env="E", file="/f"))
    await store.delete(UID, "s")
    assert await redis.exists(keys.secret(UID, "s")) == 0
    assert await usage(redis) == {b"bytes": b"5", b"env_bytes": b"5"}
    again = secret("s", value_len=24571, env="E", file="/f")
    await store.create(UID, again)
    assert await store.get(UID, "s") == again
    await store.delete(UID, "s")
    await store.create(UID, secret("empty", value_len=0, env="EMPTY"))
    await store.delete(UID, "empty")
    assert await usage(redis) == {b"bytes": b"5", b"env_bytes": b"5"}
    await store.delete(UID, "keep")
    assert await redis.keys("*") == []
    with pytest.raises(NotFound):
        await store.delete(UID, "s")


async def test_replace_ciphertext_is_compare_and_set(store: SecretStore) -> None:
    s = secret("s", value_len=4)
    await store.create(UID, s)
    assert await store.replace_ciphertext(UID, "s", str(uuid.uuid4()), s.ciphertext, b"new", "k2") is False
    assert await store.replace_ciphertext(UID, "s", s.id, b"stale", b"new", "k2") is False
    assert await store.get(UID, "s") == s
    assert await store.replace_ciphertext(UID, "s", s.id, s.ciphertext, b"\x00new", "k2") is True
    rotated = await store.get(UID, "s")
    assert rotated == StoredSecret(
        s.id, "s", s.description, "", "", T0, T0, b"\x00new", "k2", 4
    )  # rotation is not a user change: updated_at stays


async def test_user_ids(store: SecretStore, redis: aioredis.Redis) -> None:
    assert await store.user_ids() == []
    await redis.sadd(keys.USERS, OTHER, UID)
    assert await store.user_ids() == sorted([OTHER, UID])


async def test_scripts_survive_script_flush(store: SecretStore, redis: aioredis.Redis) -> None:
    await store.create(UID, secret("a", env="A"))
    await redis.script_flush()
    await store.create(UID, secret("b"))
    await redis.script_flush()
    assert [s.name for s in await store.list(UID)] == ["a", "b"]
    await redis.script_flush()
    assert (await store.update(UID, "a", SecretChanges(description="d"), T0 + 1)).description == "d"
    await redis.script_flush()
    assert await store.replace_ciphertext(UID, "b", (await store.get(UID, "b")).id, b"x", b"y", "k") is False
    await redis.script_flush()
    await store.delete(UID, "a")
    assert [s.name for s in await store.list(UID)] == ["b"]


# --- outages and the error boundary ------------------------------------------------------------------------
