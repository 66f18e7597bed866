"""TLS and mTLS from the gateway to the gRPC server, with a throwaway CA made for the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.gateway_stack import call, gateway_in_front_of
from tests.support.stack import running_server
from usersecrets.gateway import errors

SECRETS = "/api/v2/users/me/secrets"


def _issue(
    directory: Path, label: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        san = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    (directory / f"{label}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{label}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return name, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("gateway-pki")
    ca = _issue(directory, "ca", None)
    _issue(directory, "server", ca)
    _issue(directory, "gateway", ca)
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
