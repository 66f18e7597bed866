"""Helpers for gRPC contract tests: read `google.rpc` details off a failed call, snapshot Redis, find leaks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from redis.asyncio import Redis

from usersecrets.common.jsonlog import JsonFormatter
from usersecrets.server import keys

DETAILS_KEY = "grpc-status-details-bin"
VALIDATION_FAILED = "Validation failed."
# CONTRACT.md section 2's reserved env names, written out again so a typo in the server's copy fails a test.
CONTRACT_RESERVED = (  # noqa: SIM905 - the contract's text, kept as written
    "PATH HOME SHELL USER LOGNAME PWD OLDPWD LANG TERM IFS CDPATH ENV BASH_ENV TMPDIR TMP TEMP HOSTNAME "
    "SSH_AUTH_SOCK SSH_CLIENT SSH_CONNECTION SSH_TTY EDITOR VISUAL PAGER VSCODE_PROXY_URI "
    "CS_DISABLE_GETTING_STARTED_OVERRIDE XDG_RUNTIME_DIR XDG_CONFIG_HOME XDG_DATA_HOME XDG_CACHE_HOME "
    "XDG_STATE_HOME"
).split()


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("coder-session-token", token),)


@dataclass(frozen=True)
class Failure:
    """Everything a gRPC caller learns from a failed call."""

    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None
    domain: str | None = None
    detail: str | None = None
    # Every byte the caller received about the failure, for leak checks.
    raw: bytes = b""

    def sorted_violations(self) -> list[tuple[str, str]]:
        return sorted(self.violations)


def failure_of(err: grpc.aio.AioRpcError) -> Failure:
    """The aio twin of `grpc_status.rpc_status.from_call`, unpacking BadRequest and ErrorInfo."""
    status: status_pb2.Status | None = None
    raw = (err.details() or "").encode()
    for key, value in err.trailing_metadata() or ():
        raw += key.encode() + (value if isinstance(value, bytes) else value.encode())
        if key == DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
    if status is None:
        return Failure(err.code(), err.details() or "", raw=raw)
    assert status.code == err.code().value[0], f"status details code {status.code} != {err.code()}"
    assert status.message == err.details(), f"status details message {status.message!r} != {err.details()!r}"
    violations: list[tuple[str, str]] = []
    reason = domain = detail = None
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            assert reason is None, "more than one ErrorInfo"
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason, domain = info.reason, info.domain
            detail = info.metadata.get("detail")
        else:
            raise AssertionError(f"unexpected detail type {packed.type_url}")
    return Failure(err.code(), status.message, violations, reason, domain, detail, raw)


async def fails(call: Awaitable[object]) -> Failure:
    """Await a call that must fail and return what the caller learns."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return failure_of(info.value)


def assert_validation(failure: Failure, expected: Iterable[tuple[str, str]]) -> None:
    """INVALID_ARGUMENT, the contract message, and exactly these (field, description) violations."""
    assert (failure.code, failure.message) == (grpc.StatusCode.INVALID_ARGUMENT, VALIDATION_FAILED), failure
    assert failure.reason == "VALIDATION_FAILED", failure
    assert failure.sorted_violations() == sorted(expected), failure


async def user_state(redis: Redis, user_id: str) -> dict[str, object]:
    """Every key of one user's secrets with its full content, for before/after comparisons."""
    state: dict[str, object] = {}
    async for key in redis.scan_iter(match=f"{keys.PREFIX}:{{{user_id}}}:*"):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            state[key.decode()] = await redis.hgetall(key)
        elif kind == "zset":
            state[key.decode()] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            state[key.decode()] = (kind, await redis.dump(key))
    return state


async def all_redis_bytes(redis: Redis) -> bytes:
    """Every key and stored byte in Redis, to prove a plaintext never lands there."""
    chunks: list[bytes] = []
    async for key in redis.scan_iter():
        chunks.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            for k, v in (await redis.hgetall(key)).items():
                chunks += [k, v]
        elif kind == "zset":
            chunks += await redis.zrange(key, 0, -1)
        elif kind == "set":
            chunks += list(await redis.smembers(key))
        elif kind == "string":
            chunks.append(await redis.get(key) or b"")
        else:
            raise AssertionError(f"unexpected key type {kind} for {key!r}")
    return b"\n".join(chunks)


def formatted_logs(records: Iterable[logging.LogRecord]) -> list[str]:
    """Records as the server writes them (JSON lines), so leak checks see exactly the shipped text."""
    formatter = JsonFormatter()
    return [formatter.format(r) for r in records]


def assert_absent(haystack: str | bytes, *needles: str) -> None:
    text = haystack if isinstance(haystack, str) else haystack.decode("utf-8", errors="replace")
    for needle in needles:
        assert needle not in text, f"leaked a secret ({len(needle)} chars) into: {text[:400]!r}"
