"""The server's own Prometheus metrics: calls by method and status code, latency, in-flight."""

from __future__ import annotations

import grpc
import pytest

from tests.support.grpc_helpers import md
from tests.support.stack import ServerStack
from usersecrets.v1 import usersecrets_pb2 as pb


def _calls(stack: ServerStack, method: str, code: str) -> float:
    value = stack.app.metrics.registry.get_sample_value(
        "usersecrets_grpc_calls_total", {"method": method, "code": code}
    )
    return value or 0.0


async def test_calls_are_counted_by_method_and_code(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        for _ in range(2):
            await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="nope"), metadata=md(token))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="nope"), metadata=md("a-b"))
    assert _calls(server_stack, "ListUserSecrets", "OK") == 2
    assert _calls(server_stack, "GetUserSecret", "NOT_FOUND") == 1
    assert _calls(server_stack, "GetUserSecret", "UNAUTHENTICATED") == 1
    registry = server_stack.app.metrics.registry
    assert registry.get_sample_value("usersecrets_grpc_call_seconds_count", {"method": "ListUserSecrets"}) == 2
    assert registry.get_sample_value("usersecrets_grpc_in_flight") == 0
