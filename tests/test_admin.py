from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.redis_proc import free_port
from usersecrets.server import admin, keys
from usersecrets.server.crypto import Barrier, KeyRing, associated_data
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SecretChanges, StoredSecret
from usersecrets.server.store import SecretStore

PYTHON = str(Path(sys.prefix) / "bin" / "python")
K0, K1, K2 = bytes([1] * 32), bytes([2] * 32), bytes([3] * 32)
SPEC0, SPEC1, SPEC2 = (base64.b64encode(k).decode() for k in (K0, K1, K2))
CANARY = "canary-value-4d1b9e"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def kid(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass
class Result:
    code: int
    out: str
    err: str


Inproc = Callable[..., Awaitable[Result]]


async def run(redis_url: str | None, *args: str, **env: str) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
    if redis_url is not None:
        environ["USERSECRETS_REDIS_URL"] = redis_url
    environ.update(env)
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "usersecrets.server.admin", *args,
        env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def inproc(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Inproc:
    """Runs a command in this process (same parser, same run_admin) for the cheap table cases."""
    for name in list(os.environ):
        if name.startswith("USERSECRETS_"):
            monkeypatch.delenv(name)

    async def call(*argv: str) -> Result:
        capsys.readouterr()
        code = await admin.run_admin(admin.build_parser().parse_args(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def assert_one_error_line(result: Result, code: int, contains: str) -> None:
    assert (result.code, result.out) == (code, ""), result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert contains in lines[0], f"{lines[0]!r} should contain {contains!r}"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.from_url(redis_url, decode_responses=False)
    yield c
    await c.aclose()


# --- create-user -----------------------------------------------------------------------------------


async def test_create_user_prints_one_json_object(redis_url: str, client: aioredis.Redis) -> None:
    result = await run(redis_url, "create-user", "--username", "Alice", "--role", "admin", "--role", "secret-injector")
    assert (result.code, result.err) == (0, "")
    assert result.out.count("\n") == 1
    body = json.loads(result.out)
    assert set(body) == {"id", "username", "roles", "created_at"}
    assert body["username"] == "Alice"
    assert body["roles"] == ["admin", "secret-injector"]
    assert RFC3339.fullmatch(body["created_at"]), body["created_at"]
    stored = await client.hgetall(keys.user(body["id"]))
    assert stored[b"username"] == b"Alice"
    assert stored[b"roles"] == b"admin,secret-injector"
    assert await client.get(keys.username("alice")) == body["id"].encode()
    assert await client.smembers(keys.USERS) == {body["id"].encode()}


@pytest.mark.parametrize("where", ["before-command", "after-command"])
async def test_redis_url_flag_wins_over_env(
    redis_url: str, inproc: Inproc, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("USERSECRETS_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    command = ["create-user", "--username", "bob"]
    args = ["--redis-url", redis_url, *command] if where == "before-command" else [*command, "--redis-url", redis_url]
    result = await inproc(*args)
    assert (result.code, result.err) == (0, ""), result
    assert json.loads(result.out)["username"] == "bob"


async def test_create_user_bad_and_taken_usernames(redis_url: str, client: aioredis.Redis) -> None:
    assert_one_error_line(await run(redis_url, "create-user", "--username", "bad_name"), 1, "error: invalid username")
    assert await client.keys("*") == []
    await IdentityStore(client).create_user("carol")
    assert_one_error_line(
        await run(redis_url, "create-user", "--username", "CAROL"), 1, "error: username is already taken"
    )


async def test_unreachable_redis_is_one_error_line() -> None:
    result = await run(f"redis://:pw-in-url@127.0.0.1:{free_port()}/0", "create-user", "--username", "dan")
    assert_one_error_line(result, 1, "error: The secrets store is unavailable.")
    assert "pw-in-url" not in result.err


async def test_bad_redis_url_is_one_error_line(inproc: Inproc) -> None:
    result = await inproc("--redis-url", "http://:pw-in-url@host/0", "create-user", "--username", "dan")
    assert_one_error_line(result, 1, "error: Redis URL must specify one of the following schemes")
    assert "pw-in-url" not in result.err


# --- create-token / revoke-token -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "lifetime", "seconds"),
    [
        ("process", None, 30 * 86400),
        ("inproc", "30d", 30 * 86400),
        ("inproc", "12h", 12 * 3600),
        ("inproc", "90m", 90 * 60),
        ("inproc", "3600s", 3600),
    ],
    ids=["default", "30d", "12h", "90m", "3600s"],
)
async def test_create_token_prints_only_the_token(
    redis_url: str, client: aioredis.Redis, inproc: Inproc, mode: str, lifetime: str | None, seconds: int
) -> None:
    user = await IdentityStore(client).create_user("erin")
    args = ["create-token", "--user", "erin", *([] if lifetime is None else ["--lifetime", lifetime])]
    result = await run(redis_url, *args) if mode == "process" else await inproc("--redis-url", redis_url, *args)
    assert (result.code, result.err) == (0, ""), result
    token = result.out.removesuffix("\n")
    assert result.out == token + "\n"
    assert re.fullmatch(r"[a-zA-Z0-9]{10}-[a-zA-Z0-9]{22}", token), result.out
    principal = await IdentityStore(client).authenticate(token)
    assert principal.user_id == user.id
    stored = await client.hgetall(keys.token(principal.token_id))
    assert int(stored[b"expires_at"]) - int(stored[b"created_at"]) == seconds * 1_000_000


async def test_create_token_by_user_id(redis_url: str, client: aioredis.Redis, inproc: Inproc) -> None:
    user = await IdentityStore(client).create_user("frank")
    result = await inproc("--redis-url", redis_url, "create-token", "--user", user.id)
    assert result.code == 0, result
    assert (await IdentityStore(client).authenticate(result.out.strip())).user_id == user.id


@pytest.mark.parametrize(
    "lifetime",
    ["0d", "1w", "-5m", "abc", "1.5h", "", "10"],
    ids=["zero", "weeks", "negative", "word", "fraction", "empty", "no-unit"],
)
def test_bad_lifetime_is_usage_error(capsys: pytest.CaptureFixture[str], lifetime: str) -> None:
    # Usage errors stop in argparse, before any connection: run in-process.
    with pytest.raises(SystemExit) as info:
        admin.main(["--redis-url", "redis://127.0.0.1:1/0", "create-token", "--user", "x", f"--lifetime={lifetime}"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "argument --lifetime: expected a positive duration like 30d, 12h, 90m or 3600s" in captured.err


@pytest.mark.parametrize(
    "argv",
    [[], ["create-user"], ["create-token"], ["revoke-token"], ["revoke-token", "--token-id", "short"], ["nope"]],
    ids=["no-command", "no-username", "no-user", "no-token-id", "bad-token-id", "unknown-command"],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        admin.main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().out == ""


async def test_create_token_unknown_user(redis_url: str, client: aioredis.Redis, inproc: Inproc) -> None:
    for who in ["ghost", str(uuid.uuid4())]:
        result = await inproc("--redis-url", redis_url, "create-token", "--user", who)
        assert_one_error_line(result, 1, "error: no such user")
    assert await client.keys("us:token:*") == []


@pytest.mark.parametrize(("mode", "form"), [("inproc", "id"), ("process", "full-token")], ids=["id", "full-token"])
async def test_revoke_token(redis_url: str, client: aioredis.Redis, inproc: Inproc, mode: str, form: str) -> None:
    ids = IdentityStore(client)
    user = await ids.create_user("gina")
    token_id, token = await ids.create_token(user.id, 3600)
    given = token_id if form == "id" else token
    args = ["revoke-token", "--token-id", given]
    result = await run(redis_url, *args) if mode == "process" else await inproc("--redis-url", redis_url, *args)
    assert (result.code, result.err) == (0, ""), result
    assert json.loads(result.out) == {"token_id": token_id, "revoked": True}
    assert token not in result.out
    assert await client.exists(keys.token(token_id)) == 0
    again = await inproc("--redis-url", redis_url, *args)
    assert_one_error_line(again, 1, f"error: no such token {token_id}")
    assert token not in again.err


# --- rotate-keys -----------------------------------------------------------------------------------


async def put_secret(store: SecretStore, user_id: str, name: str, value: str, spec: str) -> StoredSecret:
    secret_id = str(uuid.uuid4())
    barrier = Barrier(KeyRing.parse(spec))
    sealed = barrier.seal(value.encode(), associated_data(user_id, secret_id))
    return await store.create(
        user_id,
        StoredSecret(
            id=secret_id, name=name, description="", env_name="", file_path="", created_at_us=1,
            updated_at_us=1, ciphertext=sealed, key_id=barrier.ring.active_id, value_len=len(value),
        ),
    )  # fmt: skip


async def values_under(store: SecretStore, spec: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(user, name) -> (key id, opened value) using only the keys in `spec`."""
    barrier = Barrier(KeyRing.parse(spec))
    found = {}
    for user_id in await store.user_ids():
        for s in await store.list(user_id):
            assert barrier.key_id_of(s.ciphertext) == s.key_id
            found[(user_id, s.name)] = (s.key_id, barrier.open(s.ciphertext, associated_data(user_id, s.id)).decode())
    return found


async def test_rotate_keys_end_to_end(redis_url: str, client: aioredis.Redis, inproc: Inproc) -> None:
    ids, store = IdentityStore(client), SecretStore(client)
    a, b = await ids.create_user("anna"), await ids.create_user("ben")
    await put_secret(store, a.id, "one", f"{CANARY}-a1", SPEC1)
    await put_secret(store, a.id, "two words", f"{CANARY}-a2", SPEC1)
    await put_secret(store, b.id, "one", f"{CANARY}-b1", SPEC1)
    await put_secret(store, b.id, "fresh", f"{CANARY}-b2", SPEC2)

    result = await run(redis_url, "rotate-keys", USERSECRETS_ENCRYPTION_KEYS=f"{SPEC2},{SPEC1}")
    assert (result.code, result.err) == (0, ""), result
    assert json.loads(result.out) == {"rotated": 3, "skipped": 1, "failed": 0}
    assert CANARY not in result.out + result.err
    assert await values_under(store, SPEC2) == {
        (a.id, "one"): (kid(K2), f"{CANARY}-a1"),
        (a.id, "two words"): (kid(K2), f"{CANARY}-a2"),
        (b.id, "one"): (kid(K2), f"{CANARY}-b1"),
        (b.id, "fresh"): (kid(K2), f"{CANARY}-b2"),
    }
    again = await inproc("--redis-url", redis_url, "--encryption-keys", SPEC2, "rotate-keys")
    assert json.loads(again.out) == {"rotated": 0, "skipped": 4, "failed": 0}


async def test_rotate_keys_reports_value_under_removed_key(redis_url: str, client: aioredis.Redis) -> None:
    ids, store = IdentityStore(client), SecretStore(client)
    user = await ids.create_user("cara")
    await put_secret(store, user.id, "lost", f"{CANARY}-lost", SPEC0)
    await put_secret(store, user.id, "kept", f"{CANARY}-kept", SPEC1)
    before = await store.get(user.id, "lost")

    result = await run(redis_url, "rotate-keys", USERSECRETS_ENCRYPTION_KEYS=f"{SPEC2},{SPEC1}")
    assert result.code == 1, result
    assert json.loads(result.out) == {"rotated": 1, "skipped": 0, "failed": 1}
    assert result.err == f'failed: user {user.id} secret "lost": unknown key id {kid(K0)}\n'
    assert CANARY not in result.out + result.err
    assert await store.get(user.id, "lost") == before
    kept = await store.get(user.id, "kept")
    opened = Barrier(KeyRing.parse(SPEC2)).open(kept.ciphertext, associated_data(user.id, kept.id))
    assert (kept.key_id, opened) == (kid(K2), f"{CANARY}-kept".encode())


async def test_rotate_keys_needs_a_key(
    redis_url: str, tmp_path: Path, inproc: Inproc, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotate = ["--redis-url", redis_url, "rotate-keys"]
    assert_one_error_line(await inproc(*rotate), 1, "error: no encryption key configured")
    missing = tmp_path / "key"
    assert_one_error_line(
        await inproc(*rotate, "--key-file", str(missing)), 1, f"error: key file {missing} does not exist"
    )
    assert not missing.exists()
    monkeypatch.setenv("USERSECRETS_ENCRYPTION_KEYS", "not-base64!")
    assert_one_error_line(await inproc(*rotate), 1, "error: encryption key #1 is not valid base64")


async def test_rotate_keys_with_dev_key_file(
    redis_url: str, client: aioredis.Redis, tmp_path: Path, inproc: Inproc
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{SPEC2},{SPEC1}\n")
    key_file.chmod(0o600)
    user = await IdentityStore(client).create_user("gail")
    await put_secret(SecretStore(client), user.id, "old", "v", SPEC1)
    result = await inproc("--redis-url", redis_url, "--key-file", str(key_file), "rotate-keys")
    assert (result.code, result.err, json.loads(result.out)) == (0, "", {"rotated": 1, "skipped": 0, "failed": 0})


class RacingStore:
    """Delegates to a real SecretStore; just before the first compare-and-set it runs `interfere`."""

    def __init__(self, store: SecretStore, interfere: Callable[[], Awaitable[object]]) -> None:
        self._store = store
        self._interfere = interfere
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def replace_ciphertext(self, *args: object) -> bool:
        self.attempts += 1
        if self.attempts == 1:
            await self._interfere()
        return await self._store.replace_ciphertext(*args)  # type: ignore[arg-type]


async def test_rotate_retries_a_secret_changed_mid_rotation(client: aioredis.Redis) -> None:
    store = SecretStore(client)
    user = await IdentityStore(client).create_user("dora")
    secret = await put_secret(store, user.id, "moving", "old", SPEC1)
    old_barrier = Barrier(KeyRing.parse(SPEC1))
    newer = old_barrier.seal(b"newer", associated_data(user.id, secret.id))

    async def patch_value() -> None:
        changes = SecretChanges(ciphertext=newer, key_id=kid(K1), value_len=5)
        await store.update(user.id, "moving", changes, now_us=2, expected_id=secret.id)

    racing = RacingStore(store, patch_value)
    summary, failures = await admin.rotate_keys(racing, Barrier(KeyRing.parse(f"{SPEC2},{SPEC1}")))  # type: ignore[arg-type]
    assert (summary, failures, racing.attempts) == ({"rotated": 1, "skipped": 0, "failed": 0}, [], 2)
    assert await values_under(store, SPEC2) == {(user.id, "moving"): (kid(K2), "newer")}


async def test_rotate_skips_a_secret_deleted_mid_rotation(client: aioredis.Redis) -> None:
    store = SecretStore(client)
    user = await IdentityStore(client).create_user("eve")
    await put_secret(store, user.id, "going", "bye", SPEC1)

    racing = RacingStore(store, lambda: store.delete(user.id, "going"))
    summary, failures = await admin.rotate_keys(racing, Barrier(KeyRing.parse(f"{SPEC2},{SPEC1}")))  # type: ignore[arg-type]
    assert (summary, failures, racing.attempts) == ({"rotated": 0, "skipped": 0, "failed": 0}, [], 1)
    assert await store.list(user.id) == []


# --- canary ----------------------------------------------------------------------------------------


async def test_token_and_value_never_leak_into_command_output(redis_url: str, client: aioredis.Redis) -> None:
    ids, store = IdentityStore(client), SecretStore(client)
    outputs = [await run(redis_url, "create-user", "--username", "fay")]
    minted = await run(redis_url, "create-token", "--user", "fay")
    token = minted.out.strip()
    user = await ids.user_by_name("fay")
    assert user is not None
    await put_secret(store, user.id, "canary", CANARY, SPEC1)
    await put_secret(store, user.id, "orphan", CANARY, SPEC0)
    parallel = await asyncio.gather(
        run(redis_url, "create-token", "--user", token),
        run(redis_url, "create-user", "--username", token),
        run(redis_url, "rotate-keys", "--encryption-keys", f"{SPEC2},{SPEC1}"),
        run(redis_url, "create-token", "--user", "fay", f"--lifetime={token}"),
    )
    revoked = [await run(redis_url, "revoke-token", "--token-id", token) for _ in range(2)]
    assert [r.code for r in [minted, *outputs, *parallel, *revoked]] == [0, 0, 1, 1, 1, 2, 0, 1]
    outputs += [*parallel, *revoked]
    secret_part = token.split("-", 1)[1]
    for result in outputs:
        text = result.out + result.err
        assert secret_part not in text, result
        assert CANARY not in text, result
    for key in await client.keys("*"):
        raw = await client.dump(key)
        assert raw is not None
        assert secret_part.encode() not in raw
        assert CANARY.encode() not in raw
