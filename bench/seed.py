"""Users, tokens and secrets for the benchmark.

The small data set goes through the real server (identity store for users and tokens, gRPC for secrets). The
scale data set is written straight into Redis with `redis-cli --pipe`, in the key layout of server/keys.py and
the field layout of server/lua/create.lua, with values sealed by the server's own Barrier; `verify_bulk_user`
reads one such user back through the server to prove the layout is the server's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from redis.asyncio import Redis

from bench.procs import redis_binary
from usersecrets.server import keys
from usersecrets.server.crypto import Barrier, KeyRing, associated_data
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

VALUE = "v" * 100  # every stored value: 100 bytes
DESCRIPTION = "benchmark secret"
TOKEN_LIFETIME_S = 6 * 3600
ZERO_UUID = "00000000-0000-4000-a000-000000000000"


def secret_name(i: int) -> str:
    return f"secret-{i:02d}"


def env_name(i: int) -> str:
    return f"SECRET_{i:02d}"


def file_path(i: int) -> str:
    return f"~/.secrets/secret-{i:02d}"


@dataclass(frozen=True)
class Account:
    user_id: str
    username: str
    token: str


@dataclass
class SmallData:
    readers: list[Account]  # 10 secrets each
    big: Account  # 50 secrets (the per-user maximum)
    writers: list[Account]  # no secrets: CREATE+DELETE pairs run here
    service: Account  # holds SERVICE_ROLE, for ListUserSecretValues
    secrets_per_reader: int = 10
    big_secrets: int = 50


@dataclass
class BulkData:
    users: int
    secrets_per_user: int
    tokens: list[tuple[str, str]] = field(default_factory=list)  # (user id, token)
    seconds: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)


# --- small data set, through the server ------------------------------------------------------------------


async def _accounts(redis_url: str, prefix: str, count: int, roles: tuple[str, ...] = ()) -> list[Account]:
    redis = Redis.from_url(redis_url)
    try:
        identity = IdentityStore(redis)
        made = []
        for i in range(count):
            user = await identity.create_user(f"{prefix}{i}", roles)
            _, token = await identity.create_token(user.id, TOKEN_LIFETIME_S)
            made.append(Account(user.id, user.username, token))
        return made
    finally:
        await redis.aclose()


def create_secrets(stub: pb_grpc.UserSecretsServiceStub, account: Account, count: int) -> None:
    metadata = (("coder-session-token", account.token),)
    for i in range(count):
        request = pb.CreateUserSecretRequest(
            user="me",
            name=secret_name(i),
            value=VALUE,
            description=DESCRIPTION,
            env_name=env_name(i),
            file_path=file_path(i),
        )
        stub.CreateUserSecret(request, metadata=metadata, timeout=10)


def small_data(redis_url: str, grpc_target: str, readers: int = 10, writers: int = 8) -> SmallData:
    async def make() -> SmallData:
        return SmallData(
            readers=await _accounts(redis_url, "reader", readers),
            big=(await _accounts(redis_url, "big", 1))[0],
            writers=await _accounts(redis_url, "writer", writers),
            service=(await _accounts(redis_url, "injector", 1, (SERVICE_ROLE,)))[0],
        )

    data = asyncio.run(make())
    with grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.UserSecretsServiceStub(channel)
        for account in data.readers:
            create_secrets(stub, account, data.secrets_per_reader)
        create_secrets(stub, data.big, data.big_secrets)
    return data


def delete_all(grpc_target: str, accounts: list[Account], attempts: int = 5) -> int:
    """Remove what a write scenario left behind (names whose DELETE had not been sent when time ran out).

    Calls the load tool abandoned may still be running in the gateway or server, so a secret can vanish (or,
    rarely, appear) while this runs: repeat until a listing comes back empty.
    """
    removed = 0
    with grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.UserSecretsServiceStub(channel)
        for _ in range(attempts):
            time.sleep(0.2)
            left = 0
            for account in accounts:
                metadata = (("coder-session-token", account.token),)
                listed = stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=metadata, timeout=10)
                for secret in listed.secrets:
                    left += 1
                    request = pb.DeleteUserSecretRequest(user="me", name=secret.name)
                    try:
                        stub.DeleteUserSecret(request, metadata=metadata, timeout=10)
                        removed += 1
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.NOT_FOUND:
                            raise
            if not left:
                return removed
    raise RuntimeError("write scenario leftovers keep reappearing")


# --- scale data set, straight into Redis -----------------------------------------------------------------


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _uuid4_texts(count: int) -> Iterator[str]:
    raw = os.urandom(16 * count).hex()
    for i in range(count):
        h = raw[32 * i : 32 * i + 32]
        yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _user_commands(uid: str, username: str, now_us: bytes) -> bytes:
    return b"".join(
        (
            _resp(b"HSET", keys.user(uid).encode(), b"id", uid.encode(), b"username", username.encode(),
                  b"roles", b"", b"created_at", now_us),
            _resp(b"SADD", keys.USERS.encode(), uid.encode()),
            _resp(b"SET", keys.username(username).encode(), uid.encode()),
        )
    )  # fmt: skip


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class SecretWriter:
    """The end state of successful creates (server/lua/create.lua), as plain commands for `redis-cli --pipe`.

    Everything but the user id, secret ids and sealed values is the same for every user, so each secret's HSET
    is one %-format of a prepared template (a million secrets take seconds, not minutes).
    """

    def __init__(self, barrier: Barrier, count: int, now_us: bytes) -> None:
        self.barrier, self.count = barrier, count
        self.value = VALUE.encode()
        key_id = barrier.ring.active_id.encode()  # the key Barrier.seal uses
        self.templates = []
        for i in range(count):
            tail = b"".join(
                _bulk(part)
                for part in (
                    b"name", secret_name(i).encode(), b"description", DESCRIPTION.encode(),
                    b"env_name", env_name(i).encode(), b"file_path", file_path(i).encode(),
                    b"created_at", now_us, b"updated_at", now_us, b"value",
                )
            )  # fmt: skip
            after = _bulk(b"key_id") + _bulk(key_id) + _bulk(b"value_len") + _bulk(b"%d" % len(self.value))
            key_len = len(keys.secret(ZERO_UUID, secret_name(i)))
            self.templates.append(
                b"*22\r\n$4\r\nHSET\r\n$%d\r\n%%s\r\n$2\r\nid\r\n$36\r\n%%s\r\n" % key_len
                + tail.replace(b"%", b"%%")
                + b"$%d\r\n%s\r\n"
                + after.replace(b"%", b"%%")
            )
        names = [part for i in range(count) for part in (b"0", secret_name(i).encode())]
        envs = [part for i in range(count) for part in (env_name(i).encode(), secret_name(i).encode())]
        files = [part for i in range(count) for part in (file_path(i).encode(), secret_name(i).encode())]
        total = b"%d" % (len(self.value) * count)
        self.indexes = [
            (keys.names, names),
            (keys.env_index, envs),
            (keys.file_index, files),
            (keys.usage, [b"bytes", total, b"env_bytes", total]),
        ]

    def commands(self, uid: str) -> bytes:
        out = []
        for i, secret_id in enumerate(_uuid4_texts(self.count)):
            sealed = self.barrier.seal(self.value, associated_data(uid, secret_id))
            key = keys.secret(uid, secret_name(i)).encode()
            out.append(self.templates[i] % (key, secret_id.encode(), len(sealed), sealed))
        for key_of, args in self.indexes:
            out.append(_resp(b"ZADD" if key_of is keys.names else b"HSET", key_of(uid).encode(), *args))
        return b"".join(out)


def _token_commands(uid: str, now_us: int) -> tuple[bytes, str]:
    """A session token in identity.py's layout: the id, and only the SHA-256 of the secret part."""
    raw = os.urandom(16).hex()
    token_id, token_secret = raw[:10], raw[10:32]
    digest = hashlib.sha256(token_secret.encode()).hexdigest().encode()
    key = keys.token(token_id).encode()
    expires = now_us + TOKEN_LIFETIME_S * 1_000_000
    fields = (b"user_id", uid.encode(), b"hash", digest, b"created_at", b"%d" % now_us, b"expires_at", b"%d" % expires)
    commands = _resp(b"HSET", key, *fields) + _resp(b"PEXPIRE", key, b"%d" % (TOKEN_LIFETIME_S * 1000))
    return commands, f"{token_id}-{token_secret}"


def _pipe(redis_port: int, chunks: Iterator[bytes]) -> None:
    argv = [redis_binary("redis-cli"), "-p", str(redis_port), "--pipe"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    for chunk in chunks:
        proc.stdin.write(chunk)
    proc.stdin.close()
    report = proc.stdout.read().decode(errors="replace")
    if proc.wait() != 0 or "errors: 0," not in report:
        raise RuntimeError(f"redis-cli --pipe failed: {report[-1000:]}")


def _used_memory(redis_port: int) -> int:
    argv = [redis_binary("redis-cli"), "-p", str(redis_port), "INFO", "memory"]
    text = subprocess.run(argv, capture_output=True, check=True, text=True).stdout
    for line in text.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("INFO memory has no used_memory")


def bulk_load(redis_port: int, key_spec: str, users: int, secrets_per_user: int = 10, batch: int = 500) -> BulkData:
    """`users` users with `secrets_per_user` secrets each and one token each; memory measured per phase."""
    barrier = Barrier(KeyRing.parse(key_spec))
    now = time.time_ns() // 1000
    now_us = b"%d" % now
    started = time.monotonic()
    ids = list(_uuid4_texts(users))
    names = [f"scale{i}" for i in range(users)]
    result = BulkData(users=users, secrets_per_user=secrets_per_user)

    def batches(make) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        for first in range(0, users, batch):
            yield b"".join(make(i) for i in range(first, min(first + batch, users)))

    before = _used_memory(redis_port)
    _pipe(redis_port, batches(lambda i: _user_commands(ids[i], names[i], now_us)))
    with_users = _used_memory(redis_port)
    writer = SecretWriter(barrier, secrets_per_user, now_us)
    _pipe(redis_port, batches(lambda i: writer.commands(ids[i])))
    with_secrets = _used_memory(redis_port)

    def token_for(i: int) -> bytes:
        commands, token = _token_commands(ids[i], now)
        result.tokens.append((ids[i], token))
        return commands

    _pipe(redis_port, batches(token_for))
    with_tokens = _used_memory(redis_port)
    result.seconds = time.monotonic() - started
    stored = users * secrets_per_user
    result.memory = {
        "bytes_per_secret": (with_secrets - with_users) / stored,
        "bytes_per_user_record": (with_users - before) / users,
        "bytes_per_token": (with_tokens - with_secrets) / users,
        "used_memory_bytes": float(with_tokens),
    }
    return result


def wait_for_persistence(redis_port: int, timeout: float = 120.0) -> float:
    """Let an AOF rewrite started by the load finish, so its fork does not land inside a measurement."""
    started = time.monotonic()
    argv = [redis_binary("redis-cli"), "-p", str(redis_port), "INFO", "persistence"]
    while time.monotonic() - started < timeout:
        text = subprocess.run(argv, capture_output=True, check=True, text=True).stdout
        busy = [
            line for line in text.splitlines() if line.endswith("_in_progress:1") or line == "aof_rewrite_scheduled:1"
        ]
        if not busy:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def verify_bulk_user(grpc_target: str, service: Account, user_id: str, token: str, secrets_per_user: int) -> None:
    """One bulk user read back through the server: its token works, its names list, its values decrypt."""
    with grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.UserSecretsServiceStub(channel)
        listed = stub.ListUserSecrets(
            pb.ListUserSecretsRequest(user="me"), metadata=(("coder-session-token", token),), timeout=10
        )
        expected = [secret_name(i) for i in range(secrets_per_user)]
        if [s.name for s in listed.secrets] != expected:
            raise RuntimeError(f"bulk user lists {[s.name for s in listed.secrets]}, expected {expected}")
        values = stub.ListUserSecretValues(
            pb.ListUserSecretValuesRequest(user=user_id),
            metadata=(("coder-session-token", service.token),),
            timeout=10,
        )
        if [v.value for v in values.values] != [VALUE] * secrets_per_user:
            raise RuntimeError("bulk user's values do not decrypt to what was stored")
