from __future__ import annotations

import grpc
import pytest

from tests.support.stack import ServerStack
from usersecrets.v1 import usersecrets_pb2 as pb


async def test_create_get_list_delete_roundtrip(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    md = (("coder-session-token", token),)
    async with server_stack.stub() as stub:
        created = await stub.CreateUserSecret(
            pb.CreateUserSecretRequest(user="me", name="github", value="canary-v", env_name="GH_TOKEN"), metadata=md
        )
        assert created.name == "github"
        assert created.env_name == "GH_TOKEN"
        got = await stub.GetUserSecret(pb.GetUserSecretRequest(user="alice", name="github"), metadata=md)
        assert got == created
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md)
        assert list(listed.secrets) == [created]
        await stub.DeleteUserSecret(pb.DeleteUserSecretRequest(user="me", name="github"), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name="github"), metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "Resource not found or you do not have access to this resource"
