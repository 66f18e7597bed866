"""A throwaway certificate authority for TLS and mTLS tests, made with `cryptography`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Issued:
    pem: Pem
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def issue(
    subject: str,
    issuer: Issued | None = None,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    usage: str = "",
    expired: bool = False,
) -> Issued:
    """A CA certificate when `issuer` is None, else a leaf for `hosts` signed by `issuer`. `usage` "server" or
    "client" adds that extended key usage to a leaf; `expired` makes a certificate whose validity has ended."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (issuer.name, issuer.key) if issuer else (name, key)
    now = dt.datetime.now(dt.UTC)
    valid_from, valid_to = (
        (now - dt.timedelta(days=2), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(minutes=1), now + dt.timedelta(hours=1))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if usage:
            oid = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}[usage]
            builder = builder.add_extension(x509.ExtendedKeyUsage([oid]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pem = Pem(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return Issued(pem, name, key)


def write(directory: Path, label: str, issued: Issued) -> Issued:
    """`issued` as `<directory>/<label>.crt` and `.key`."""
    (directory / f"{label}.crt").write_bytes(issued.pem.cert)
    (directory / f"{label}.key").write_bytes(issued.pem.key)
    return issued


def make_pki(directory: Path, leaves: Sequence[str]) -> dict[str, Pem]:
    """A CA ("ca") and one leaf per label, each also written to `<directory>/<label>.crt` and `.key`."""
    ca = write(directory, "ca", issue("test ca"))
    return {"ca": ca.pem} | {label: write(directory, label, issue(label, ca)).pem for label in leaves}
