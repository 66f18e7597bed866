"""Operations: health, reflection, graceful SIGTERM, JSON logs without secrets, busy port (CONTRACT.md section 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from redis.asyncio import Redis

from tests.support.grpc_helpers import assert_absent, fails, formatted_logs, md
from tests.support.redis_proc import RedisProcess, free_port
from tests.support.stack import ServerStack, running_server
from usersecrets.server.crypto import generate_key_spec
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

SERVICE = "usersecrets.v1.UserSecretsService"
UNAVAILABLE = "The secrets store is unavailable. Try again later."
CANARY = "canary-ops-9d2f61c4"
SERVER_BIN = Path(sys.executable).parent / "usersecrets-server"
# gRPC's C core writes its own native lines ("E1204 16:34:57.796058 16722 add_port.cc:83] ...") to stderr.
GRPC_CORE_LINE = re.compile(r"^[EWID]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


async def health_status(target: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return answer.status


async def wait_for_health(target: str, wanted: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (status := await health_status(target)) != wanted:
        assert time.monotonic() < deadline, f"health stayed {status}, wanted {wanted}"
        await asyncio.sleep(0.05)


async def test_health_needs_no_token_and_follows_redis(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        async with running_server(redis.url) as stack:
            for service in ("", SERVICE):
                assert await health_status(stack.grpc_target, service) == health_pb2.HealthCheckResponse.SERVING
            _, token = await stack.user("alice")
            redis.stop()
            await wait_for_health(stack.grpc_target, health_pb2.HealthCheckResponse.NOT_SERVING)
            assert await health_status(stack.grpc_target, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            async with stack.stub() as stub:
                failure = await fails(stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token)))
                assert (failure.code, failure.message) == (grpc.StatusCode.UNAVAILABLE, UNAVAILABLE)
                assert failure.reason == "STORAGE_UNAVAILABLE"
                # The same port, empty again: SERVING returns and the scripts are loaded afresh.
                redis.start()
                await wait_for_health(stack.grpc_target, health_pb2.HealthCheckResponse.SERVING)
                _, token = await stack.user("alice")
                await stub.CreateUserSecret(
                    pb.CreateUserSecretRequest(user="me", name="s", value="v"), metadata=md(token)
                )
                listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
                assert [s.name for s in listed.secrets] == ["s"]
    finally:
        redis.stop()


async def test_health_is_not_serving_while_draining(server_stack: ServerStack) -> None:
    assert await health_status(server_stack.grpc_target) == health_pb2.HealthCheckResponse.SERVING
    await server_stack.app.health.drain()
    # Redis still answers, yet load balancers must stop sending work.
    await asyncio.sleep(0.3)
    for service in ("", SERVICE):
        assert await health_status(server_stack.grpc_target, service) == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_needs_no_token(server_stack: ServerStack) -> None:
    async with grpc.aio.insecure_channel(server_stack.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        answers = [a async for a in call]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_unknown_method_is_unimplemented(server_stack: ServerStack) -> None:
    async with grpc.aio.insecure_channel(server_stack.grpc_target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/NoSuchMethod")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_no_value_or_token_in_any_answer_or_log(
    server_stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Every kind of answer, success or failure, while the server's logs are captured at debug level."""
    caplog.set_level(logging.DEBUG)
    alice, token = await server_stack.user("alice")
    _, bob = await server_stack.user("bob")
    _, service = await server_stack.user("injector", roles=(SERVICE_ROLE,))
    seen: list[bytes] = []
    async with server_stack.stub() as stub:
        calls = [
            stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="s", value=CANARY), metadata=md(token)),
            stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="s", value=CANARY), metadata=md(token)),
            stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="n", value=CANARY + "\x00" + CANARY * 2000),
                metadata=md(token),
            ),
            stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user="me", name="s", value=CANARY), metadata=md(token)),
            stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user="me", name="x", value=CANARY), metadata=md(token)),
            stub.UpdateUserSecret(pb.UpdateUserSecretRequest(user="alice", name="s", value=CANARY), metadata=md(bob)),
            stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="s"), metadata=md(token)),
            stub.ListUserSecrets(
                pb.ListUserSecretsRequest(user="me"), metadata=(("authorization", f"Bearer {token}"),)
            ),
            stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="alice"), metadata=md(service)),
            stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="alice"), metadata=md(token)),
            stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token[:-1] + "Q")),
            stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token + "x")),
        ]
        for call in calls:
            try:
                answer = await call
            except grpc.aio.AioRpcError as err:
                seen.append((err.details() or "").encode() + repr(err.trailing_metadata()).encode())
            else:
                if not isinstance(answer, pb.ListUserSecretValuesResponse):
                    seen.append(answer.SerializeToString())
        # A value that fails to decrypt must not leak either.
        key = f"us:{{{alice.id}}}:secret:s"
        sealed = await server_stack.redis.hget(key, "value")
        # Flip a bit of the tag (setting a byte to 0 would change nothing when it already is 0: 1 run in 256).
        await server_stack.redis.hset(key, "value", sealed[:-1] + bytes([sealed[-1] ^ 0x01]))
        failure = await fails(
            stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="alice"), metadata=md(service))
        )
        assert failure.code == grpc.StatusCode.DATA_LOSS
        seen.append(failure.raw)
    lines = formatted_logs(caplog.records)
    rpc_lines = [json.loads(line) for line in lines if json.loads(line)["msg"] == "rpc"]
    assert len(rpc_lines) == len(calls) + 1
    assert all(line["code"] and line["method"] for line in rpc_lines)
    for text in [*lines, *seen]:
        assert_absent(text, CANARY, token, token.split("-")[1], bob, service)


@dataclass
class ServerProcess:
    proc: asyncio.subprocess.Process
    target: str
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

    async def wait_for_line(self, msg: str, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not any(_msg_of(line) == msg for line in self.lines):
            assert self.proc.returncode is None, f"server exited: {self.lines}"
            assert time.monotonic() < deadline, f"no {msg!r} line: {self.lines}"
            await asyncio.sleep(0.02)


def _msg_of(line: str) -> str | None:
    try:
        return json.loads(line).get("msg")
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def server_process(redis_url: str, listen: str, **env: str) -> AsyncIterator[ServerProcess]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
    environ |= {
        "USERSECRETS_REDIS_URL": redis_url,
        "USERSECRETS_ENCRYPTION_KEYS": generate_key_spec(),
        "USERSECRETS_GRPC_LISTEN": listen,
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        str(SERVER_BIN), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=environ,
    )  # fmt: skip
    server = ServerProcess(proc, listen)
    server.reader = asyncio.create_task(server.read_stderr())
    try:
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await server.reader


async def test_sigterm_drains_in_flight_call_and_logs_json_without_secrets(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    direct = Redis.from_url(redis.url)
    try:
        identity = IdentityStore(direct)
        alice = await identity.create_user("alice")
        _, token = await identity.create_token(alice.id, 600)
        injector = await identity.create_user("injector", [SERVICE_ROLE])
        _, service = await identity.create_token(injector.id, 600)
        listen = f"127.0.0.1:{free_port()}"
        async with server_process(redis.url, listen, USERSECRETS_SHUTDOWN_GRACE="5") as server:
            await server.wait_for_line("serving")
            async with grpc.aio.insecure_channel(listen) as channel:
                stub = pb_grpc.UserSecretsServiceStub(channel)
                tagged = (*md(token), ("x-request-id", "req-ops-0001"))
                await stub.CreateUserSecret(
                    pb.CreateUserSecretRequest(user="me", name="s", value=CANARY), metadata=tagged
                )
                await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="s"), metadata=md(token))
                bad = pb.CreateUserSecretRequest(user="me", name="s/", value=CANARY + "\x00")
                await fails(stub.CreateUserSecret(bad, metadata=md(token)))
                await fails(stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token + "x")))
                values = await stub.ListUserSecretValues(
                    pb.ListUserSecretValuesRequest(user="alice"), metadata=md(service)
                )
                assert [v.value for v in values.values] == [CANARY]

                # Hold Redis writes so the next create is in flight when SIGTERM arrives.
                await direct.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
                late_request = pb.CreateUserSecretRequest(user="me", name="late", value=CANARY)
                in_flight = asyncio.ensure_future(stub.CreateUserSecret(late_request, metadata=md(token)))
                await asyncio.sleep(0.3)
                assert not in_flight.done()
                server.proc.send_signal(signal.SIGTERM)
                await server.wait_for_line("draining")
                # New work is refused while the old call finishes.
                refused = await fails(
                    stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="s"), metadata=md(token))
                )
                assert refused.code == grpc.StatusCode.UNAVAILABLE
                late = await asyncio.wait_for(in_flight, timeout=5)
                assert late.name == "late"
            assert await asyncio.wait_for(server.proc.wait(), timeout=10) == 0
        assert await direct.hget(f"us:{{{alice.id}}}:secret:late", "name") == b"late"
    finally:
        await direct.aclose()
        redis.stop()

    parsed = [json.loads(line) for line in server.lines]  # every line is one JSON object
    assert [p["msg"] for p in parsed if p["msg"] in ("serving", "draining", "stopped")] == [
        "serving",
        "draining",
        "stopped",
    ]
    rpc = [p for p in parsed if p["msg"] == "rpc"]
    assert [(p["method"], p["code"]) for p in rpc] == [
        ("CreateUserSecret", "OK"),
        ("GetUserSecret", "OK"),
        ("CreateUserSecret", "INVALID_ARGUMENT"),
        ("ListUserSecrets", "UNAUTHENTICATED"),
        ("ListUserSecretValues", "OK"),
        ("CreateUserSecret", "OK"),
    ]
    assert rpc[0]["request_id"] == "req-ops-0001"
    ids = [p["request_id"] for p in rpc]
    assert all(ids) and len(set(ids)) == len(ids)
    for line in server.lines:
        assert_absent(line, CANARY, token, token.split("-")[1], service)


async def test_busy_port_fails_to_start(redis_url: str) -> None:
    # The holder sets SO_REUSEPORT itself: only a server that leaves it off is refused.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    listen = f"127.0.0.1:{holder.getsockname()[1]}"
    try:
        async with server_process(redis_url, listen) as server:
            code = await asyncio.wait_for(server.proc.wait(), timeout=15)
            await server.reader
    finally:
        holder.close()
    assert code == 1, server.lines
    ours = [line for line in server.lines if not GRPC_CORE_LINE.match(line)]
    assert not any("Traceback" in line for line in ours), "\n".join(server.lines)
    parsed = [json.loads(line) for line in ours]  # one JSON object per line
    assert any(p["msg"] == "cannot start" and listen in p.get("error", "") for p in parsed), server.lines
