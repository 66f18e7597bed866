"""Races through the whole server (auth, rules, scripts), as issue 2 names them: concurrent gRPC calls."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import grpc
import pytest

from tests.support.grpc_helpers import md
from tests.support.stack import ServerStack
from usersecrets.server.consistency import check_user
from usersecrets.v1 import usersecrets_pb2 as pb


async def _outcomes(calls: list) -> Counter[str]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    counted: Counter[str] = Counter()
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            counted[result.code().name] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            counted["OK"] += 1
    return counted


@pytest.mark.parametrize(
    ("field", "make"),
    [
        ("name", lambda i: {"name": "same"}),
        ("env_name", lambda i: {"name": f"s{i}", "env_name": "SAME_ENV"}),
        ("file_path", lambda i: {"name": f"s{i}", "file_path": "~/same"}),
    ],
    ids=["name", "env_name", "file_path"],
)
async def test_thirty_concurrent_duplicates_give_one_success(server_stack: ServerStack, field: str, make) -> None:
    user, token = await server_stack.user("racer")
    async with server_stack.stub() as stub:
        calls = [
            stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", value="v", **make(i)), metadata=md(token))
            for i in range(30)
        ]
        assert await _outcomes(calls) == Counter({"OK": 1, "ALREADY_EXISTS": 29})
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert len(listed.secrets) == 1
    assert await check_user(server_stack.redis, user.id) == []


async def test_eighty_concurrent_distinct_creates_give_fifty(server_stack: ServerStack) -> None:
    user, token = await server_stack.user("racer")
    async with server_stack.stub() as stub:
        calls = [
            stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name=f"n{i:02d}", value="v"), metadata=md(token)
            )
            for i in range(80)
        ]
        assert await _outcomes(calls) == Counter({"OK": 50, "FAILED_PRECONDITION": 30})
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert len(listed.secrets) == 50
    assert await check_user(server_stack.redis, user.id) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_concurrent_mix_keeps_every_index_in_step(server_stack: ServerStack, seed: int) -> None:
    rng = random.Random(seed)
    user, token = await server_stack.user("racer")
    names = [f"s{i}" for i in range(8)]
    envs = ["", "A", "B", "C"]
    files = ["", "~/a", "~/b", "/c"]

    def call(stub):
        name = rng.choice(names)
        kind = rng.choice(["create", "update", "delete", "list"])
        if kind == "create":
            req = pb.CreateUserSecretRequest(
                user="me",
                name=name,
                value="x" * rng.randint(1, 3000),
                env_name=rng.choice(envs),
                file_path=rng.choice(files),
            )
            return stub.CreateUserSecret(req, metadata=md(token))
        if kind == "update":
            req = pb.UpdateUserSecretRequest(user="me", name=name, env_name=rng.choice(envs))
            if rng.random() < 0.5:
                req.value = "y" * rng.randint(0, 3000)
            if rng.random() < 0.5:
                req.file_path = rng.choice(files)
            return stub.UpdateUserSecret(req, metadata=md(token))
        if kind == "delete":
            return stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name=name), metadata=md(token))
        return stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))

    async with server_stack.stub() as stub:
        outcomes = await _outcomes([call(stub) for _ in range(300)])
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert set(outcomes) <= {"OK", "ALREADY_EXISTS", "NOT_FOUND", "FAILED_PRECONDITION"}, outcomes
    assert outcomes["OK"] > 0
    assert await check_user(server_stack.redis, user.id) == []
    envs_in_use = [s.env_name for s in listed.secrets if s.env_name]
    files_in_use = [s.file_path for s in listed.secrets if s.file_path]
    assert len(envs_in_use) == len(set(envs_in_use))
    assert len(files_in_use) == len(set(files_in_use))
