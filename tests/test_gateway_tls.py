"""TLS and mTLS from the gateway to the gRPC server, with a throwaway CA made for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gateway_stack import call, gateway_in_front_of
from tests.support.pki import make_pki
from tests.support.stack import running_server
from usersecrets.gateway import errors

SECRETS = "/api/v2/users/me/secrets"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("gateway-pki")
    make_pki(directory, ["server", "gateway"])
    return directory


async def test_tls_to_the_server(redis_url: str, pki: Path) -> None:
    tls = {"tls_cert": str(pki / "server.crt"), "tls_key": str(pki / "server.key")}
    async with running_server(redis_url, **tls) as server:
        _, token = await server.user("alice")
        async with gateway_in_front_of(server, grpc_tls_ca=str(pki / "ca.crt")) as gw:
            assert (await call(gw.http, "GET", SECRETS, token=token)).raw == b"[]"
            assert (await call(gw.http, "GET", "/healthz")).status == 200
        async with gateway_in_front_of(server) as plaintext:
            reply = await call(plaintext.http, "GET", SECRETS, token=token)
            assert (reply.status, reply.json) == (503, {"message": errors.UNAVAILABLE})


async def test_mtls_to_the_server(redis_url: str, pki: Path) -> None:
    tls = {
        "tls_cert": str(pki / "server.crt"),
        "tls_key": str(pki / "server.key"),
        "tls_client_ca": str(pki / "ca.crt"),
    }
    async with running_server(redis_url, **tls) as server:
        _, token = await server.user("alice")
        identity = {"grpc_tls_cert": str(pki / "gateway.crt"), "grpc_tls_key": str(pki / "gateway.key")}
        async with gateway_in_front_of(server, grpc_tls_ca=str(pki / "ca.crt"), **identity) as gw:
            reply = await call(gw.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
            assert reply.status == 201
        async with gateway_in_front_of(server, grpc_tls_ca=str(pki / "ca.crt")) as anonymous:
            reply = await call(anonymous.http, "GET", SECRETS, token=token)
            assert (reply.status, reply.json) == (503, {"message": errors.UNAVAILABLE})
