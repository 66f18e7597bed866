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
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Issued:
    pem: Pem
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def issue(subject: str, issuer: Issued | None = None) -> Issued:
    """A CA certificate when `issuer` is None, else a leaf for localhost / 127.0.0.1 signed by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (issuer.name, issuer.key) if issuer else (name, key)
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
    pem = Pem(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return Issued(pem, name, key)


def make_pki(directory: Path, leaves: Sequence[str]) -> dict[str, Pem]:
    """A CA ("ca") and one leaf per label, each also written to `<directory>/<label>.crt` and `.key`."""
    ca = issue("test ca")
    made = {"ca": ca.pem} | {label: issue(label, ca).pem for label in leaves}
    for label, pem in made.items():
        (directory / f"{label}.crt").write_bytes(pem.cert)
        (directory / f"{label}.key").write_bytes(pem.key)
    return made
