"""The gRPC helper for internal callers, against a real server: token metadata, TLS and mTLS, values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.support.pki import Pem, make_pki
from tests.support.stack import ServerStack, running_server
from usersecrets.sdk.grpc_client import (
    aio_connect,
    alist_user_secret_values,
    connect,
    list_user_secret_values,
    rpc_violations,
)
from usersecrets.sdk.models import Validation
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem | Path]:
    directory = tmp_path_factory.mktemp("pki")
    made: dict[str, Pem | Path] = dict(make_pki(directory, ["server", "client"]))
    made["dir"] = directory
    return made


async def _seed(stack: ServerStack, prefix: str, **tls: bytes) -> tuple[str, str]:
    """A user with two secrets (made through the helper's own stub), and a service token for reading them."""
    user, token = await stack.user(prefix)
    _, service_token = await stack.user(prefix + "-svc", roles=(SERVICE_ROLE,))
    async with aio_connect(stack.grpc_target, token, **tls) as conn:  # type: ignore[arg-type]
        await conn.stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="b", value="vb", env_name="B"))
        await conn.stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name="a", value="va", file_path="/a"))
    return user.username, service_token


async def test_plaintext_sync_and_async_read_values(redis_url: str) -> None:
    async with running_server(redis_url) as stack:
        username, service_token = await _seed(stack, "alice")

        def read() -> list[tuple[str, str, str, str]]:
            with connect(stack.grpc_target, service_token) as conn:
                return [
                    (v.secret.name, v.value, v.secret.env_name, v.secret.file_path)
                    for v in list_user_secret_values(conn.stub, username)
                ]

        want = [("a", "va", "", "/a"), ("b", "vb", "B", "")]
        assert await asyncio.to_thread(read) == want
        async with aio_connect(stack.grpc_target, service_token) as conn:
            values = await alist_user_secret_values(conn.stub, username)
        assert [(v.secret.name, v.value, v.secret.env_name, v.secret.file_path) for v in values] == want
        assert values[0].secret.created_at.tzinfo is not None
        assert "va" not in repr(values)


async def test_token_rides_in_metadata_and_errors_keep_violations(redis_url: str) -> None:
    async with running_server(redis_url) as stack:
        username, _ = await _seed(stack, "bob")
        _, plain_token = await stack.user("carol")
        async with aio_connect(stack.grpc_target, plain_token) as conn:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await alist_user_secret_values(conn.stub, username)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await conn.stub.CreateUserSecret(
                    pb.CreateUserSecretRequest(user="me", name="x", value="v", env_name="PATH")
                )
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in rpc_violations(invalid.value)] == ["env_name"]
            listed = await conn.stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"))
            assert list(listed.secrets) == []
        async with aio_connect(stack.grpc_target, "nosuchid12-secret") as conn:
            with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
                await conn.stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"))
            assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert rpc_violations(unauthenticated.value) == []

        def sync_violations() -> list[Validation]:
            with connect(stack.grpc_target, plain_token) as conn:
                try:
                    conn.stub.CreateUserSecret(pb.CreateUserSecretRequest(user="me", name=" x", value=""), timeout=5)
                except grpc.RpcError as exc:
                    return rpc_violations(exc)
            raise AssertionError("CreateUserSecret with a padded name and no value succeeded")

        assert sorted(v.field for v in await asyncio.to_thread(sync_violations)) == ["name", "value"]


async def test_tls_and_mtls(redis_url: str, pki: dict[str, Pem | Path]) -> None:
    directory = pki["dir"]
    assert isinstance(directory, Path)
    ca, client = pki["ca"], pki["client"]
    assert isinstance(ca, Pem) and isinstance(client, Pem)
    tls = {"tls_cert": str(directory / "server.crt"), "tls_key": str(directory / "server.key")}
    async with running_server(redis_url, **tls) as stack:
        username, service_token = await _seed(stack, "dave", root_certificates=ca.cert)
        async with aio_connect(
            stack.grpc_target, service_token, root_certificates=ca.cert, server_name="localhost"
        ) as conn:
            assert [v.value for v in await alist_user_secret_values(conn.stub, username)] == ["va", "vb"]

        def sync_read() -> list[str]:
            with connect(stack.grpc_target, service_token, root_certificates=ca.cert) as conn:
                return [v.value for v in list_user_secret_values(conn.stub, username, timeout=5)]

        assert await asyncio.to_thread(sync_read) == ["va", "vb"]
        async with aio_connect(stack.grpc_target, service_token) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await alist_user_secret_values(plaintext.stub, username, timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    async with running_server(redis_url, **tls, tls_client_ca=str(directory / "ca.crt")) as stack:
        username, service_token = await _seed(
            stack, "erin", root_certificates=ca.cert, certificate_chain=client.cert, private_key=client.key
        )
        async with aio_connect(
            stack.grpc_target,
            service_token,
            root_certificates=ca.cert,
            certificate_chain=client.cert,
            private_key=client.key,
        ) as conn:
            assert [v.value for v in await alist_user_secret_values(conn.stub, username)] == ["va", "vb"]
        async with aio_connect(stack.grpc_target, service_token, root_certificates=ca.cert) as no_identity:
            with pytest.raises(grpc.aio.AioRpcError) as rejected:
                await alist_user_secret_values(no_identity.stub, username, timeout=2)
            assert rejected.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_both_halves() -> None:
    with pytest.raises(ValueError, match="both"):
        connect("127.0.0.1:1", "a-b", certificate_chain=b"cert")
