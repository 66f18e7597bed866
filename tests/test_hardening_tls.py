"""Issue 5, item 7: transport security. A throwaway PKI made with `cryptography` (a CA, a stranger CA, and
certificates good and bad); the gRPC server with TLS and with mTLS; clients that must get in and clients that
must be refused; the gateway and the server as processes configured by their environment variables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.gateway_stack import call, gateway_in_front_of
from tests.support.grpc_helpers import md
from tests.support.pki import issue, write
from tests.support.processes import child, gateway_process, until
from tests.support.redis_proc import free_port
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway import errors
from usersecrets.server.crypto import generate_key_spec
from usersecrets.server.identity import IdentityStore
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

SECRETS = "/api/v2/users/me/secrets"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hardening-pki")
    ca = write(d, "ca", issue("ca"))
    stranger = write(d, "stranger-ca", issue("stranger-ca"))
    write(d, "server", issue("server", ca, usage="server"))
    write(d, "server-wrong-host", issue("server-wrong-host", ca, hosts=("elsewhere.example",), usage="server"))
    write(d, "server-by-stranger", issue("server-by-stranger", stranger, usage="server"))
    write(d, "client", issue("client", ca, usage="client"))
    write(d, "client-by-stranger", issue("client-by-stranger", stranger, usage="client"))
    write(d, "client-expired", issue("client-expired", ca, usage="client", expired=True))
    write(d, "client-self-signed", issue("client-self-signed"))
    return d


@dataclass(frozen=True)
class Client:
    """How a client dials: plaintext, or TLS trusting `ca` and presenting `cert` (a label in the PKI)."""

    ca: str | None = "ca"
    cert: str | None = None

    def channel(self, pki: Path, target: str) -> grpc.aio.Channel:
        if self.ca is None:
            return grpc.aio.insecure_channel(target)
        key = (pki / f"{self.cert}.key").read_bytes() if self.cert else None
        chain = (pki / f"{self.cert}.crt").read_bytes() if self.cert else None
        credentials = grpc.ssl_channel_credentials((pki / f"{self.ca}.crt").read_bytes(), key, chain)
        return grpc.aio.secure_channel(target, credentials)


def server_tls(pki: Path, cert: str = "server", mutual: bool = False) -> dict[str, str]:
    settings = {"tls_cert": str(pki / f"{cert}.crt"), "tls_key": str(pki / f"{cert}.key")}
    return settings | ({"tls_client_ca": str(pki / "ca.crt")} if mutual else {})


async def list_as(client: Client, pki: Path, server: ServerStack, token: str) -> str:
    """The status code name of one authenticated call made the way `client` dials."""
    async with client.channel(pki, f"localhost:{server.app.port}") as channel:
        stub = pb_grpc.UserSecretsServiceStub(channel)
        try:
            await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token), timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code().name
    return "OK"


CASES = [
    # (id, server certificate, mutual TLS, client, expected code)
    ("tls-trusting-client", "server", False, Client(), "OK"),
    ("tls-client-with-a-cert", "server", False, Client(cert="client"), "OK"),
    ("tls-plaintext-client", "server", False, Client(ca=None), "UNAVAILABLE"),
    ("tls-client-trusting-a-stranger-ca", "server", False, Client(ca="stranger-ca"), "UNAVAILABLE"),
    ("tls-server-cert-from-a-stranger-ca", "server-by-stranger", False, Client(), "UNAVAILABLE"),
    ("tls-server-cert-for-another-host", "server-wrong-host", False, Client(), "UNAVAILABLE"),
    ("mtls-client-cert-from-the-ca", "server", True, Client(cert="client"), "OK"),
    ("mtls-no-client-cert", "server", True, Client(), "UNAVAILABLE"),
    ("mtls-client-cert-from-a-stranger-ca", "server", True, Client(cert="client-by-stranger"), "UNAVAILABLE"),
    ("mtls-expired-client-cert", "server", True, Client(cert="client-expired"), "UNAVAILABLE"),
    ("mtls-self-signed-client-cert", "server", True, Client(cert="client-self-signed"), "UNAVAILABLE"),
    ("mtls-plaintext-client", "server", True, Client(ca=None), "UNAVAILABLE"),
]


@pytest.mark.parametrize(("cert", "mutual", "client", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_who_gets_in(redis_url: str, pki: Path, cert: str, mutual: bool, client: Client, expected: str) -> None:
    async with running_server(redis_url, **server_tls(pki, cert, mutual)) as server:
        _, token = await server.user("alice")
        assert await list_as(client, pki, server, token) == expected


@pytest.mark.parametrize(
    ("identity", "ca"),
    [("client-by-stranger", "ca"), ("client-expired", "ca"), ("client", "stranger-ca")],
    ids=["client-cert-from-a-stranger-ca", "expired-client-cert", "trusting-a-stranger-ca"],
)
async def test_gateway_with_a_bad_identity_is_refused_by_the_mtls_server(
    redis_url: str, pki: Path, identity: str, ca: str
) -> None:
    async with running_server(redis_url, **server_tls(pki, mutual=True)) as server:
        _, token = await server.user("alice")
        tls = {
            "grpc_tls_ca": str(pki / f"{ca}.crt"),
            "grpc_tls_cert": str(pki / f"{identity}.crt"),
            "grpc_tls_key": str(pki / f"{identity}.key"),
            "grpc_tls_server_name": "localhost",
        }
        async with gateway_in_front_of(server, **tls) as gw:
            reply = await call(gw.http, "GET", SECRETS, token=token)
            health = await call(gw.http, "GET", "/healthz")
    assert (reply.status, reply.json) == (503, {"message": errors.UNAVAILABLE})
    assert (health.status, health.json["status"]) == (503, "UNREACHABLE")


@pytest.fixture
async def mtls_server_process(redis_url: str, pki: Path, tmp_path: Path) -> AsyncIterator[str]:
    """`usersecrets-server` with mTLS from its environment variables alone; yields its address."""
    listen = f"127.0.0.1:{free_port()}"
    settings = {
        "USERSECRETS_REDIS_URL": redis_url,
        "USERSECRETS_ENCRYPTION_KEYS": generate_key_spec(),
        "USERSECRETS_GRPC_LISTEN": listen,
        "USERSECRETS_TLS_CERT": str(pki / "server.crt"),
        "USERSECRETS_TLS_KEY": str(pki / "server.key"),
        "USERSECRETS_TLS_CLIENT_CA": str(pki / "ca.crt"),
    }
    async with child("usersecrets-server", listen, tmp_path, settings) as server:

        async def serving() -> bool:
            assert server.proc.poll() is None, server.lines[-20:]
            return await health(Client(cert="client"), pki, listen) == "SERVING"

        await until(serving, "the mTLS server serving")
        yield listen


async def health(client: Client, pki: Path, listen: str) -> str:
    target = f"localhost:{listen.rpartition(':')[2]}"
    async with client.channel(pki, target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.aio.AioRpcError as err:
            return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def test_processes_configured_by_environment(
    mtls_server_process: str, redis_url: str, pki: Path, tmp_path: Path
) -> None:
    listen = mtls_server_process
    assert await health(Client(), pki, listen) == "UNAVAILABLE"  # no client certificate
    assert await health(Client(ca=None), pki, listen) == "UNAVAILABLE"  # plaintext
    gateway_listen = f"127.0.0.1:{free_port()}"
    tls = {
        "USERSECRETS_GRPC_TLS_CA": str(pki / "ca.crt"),
        "USERSECRETS_GRPC_TLS_CERT": str(pki / "client.crt"),
        "USERSECRETS_GRPC_TLS_KEY": str(pki / "client.key"),
        "USERSECRETS_GRPC_TLS_SERVER_NAME": "localhost",
    }
    direct = aioredis.from_url(redis_url)
    try:
        identity = IdentityStore(direct)
        _, token = await identity.create_token((await identity.create_user("alice")).id, 600)
    finally:
        await direct.aclose()
    async with (
        gateway_process(tmp_path, gateway_listen, listen, **tls),
        aiohttp.ClientSession(f"http://{gateway_listen}") as http,
    ):
        created = await call(http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
        listed = await call(http, "GET", SECRETS, token=token)
    assert created.status == 201
    assert [s["name"] for s in listed.json] == ["k"]
