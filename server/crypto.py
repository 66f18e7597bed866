"""Encryption at rest: the key ring (pure data) and the AES-256-GCM barrier (one sealed format).

Sealed format, written only by `Barrier.seal`:

    0x01 | key id (8 ascii hex bytes) | nonce (12 bytes) | AES-GCM ciphertext + 16-byte tag

The version byte and key id are authenticated too: they are part of the AES-GCM associated data,
followed by the caller's `associated_data(user_id, secret_id)`, so a value moved to another secret or
user fails to open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from usersecrets.server import errors
from usersecrets.server.config import ServerConfig

VERSION = 0x01
KEY_BYTES = 32
KEY_ID_LEN = 8
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = 1 + KEY_ID_LEN
MIN_SEALED_LEN = HEADER_LEN + NONCE_LEN + TAG_LEN


def key_id_for(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:KEY_ID_LEN]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Ordered keys; the first one seals, every one opens. The repr never shows key bytes."""

    entries: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        assert self.entries, "a key ring needs at least one key"

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        parts = [p.strip() for p in spec.split(",")]
        if not any(parts):
            raise ValueError("encryption keys are empty: expected comma-separated base64 of 32-byte keys")
        entries: list[tuple[str, bytes]] = []
        for position, part in enumerate(parts, start=1):
            # Messages name the position only: the key text itself must never reach a log.
            if not part:
                raise ValueError(f"encryption key #{position} is empty")
            try:
                key = base64.b64decode(part, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"encryption key #{position} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise ValueError(f"encryption key #{position} is {len(key)} bytes; expected {KEY_BYTES}")
            key_id = key_id_for(key)
            if any(key_id == seen for seen, _ in entries):
                raise ValueError(f"encryption key #{position} repeats an earlier key (id {key_id})")
            entries.append((key_id, key))
        return cls(tuple(entries))

    @property
    def active_id(self) -> str:
        return self.entries[0][0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.entries)

    def key(self, key_id: str) -> bytes | None:
        for candidate, key in self.entries:
            if candidate == key_id:
                return key
        return None


def associated_data(user_id: str, secret_id: str) -> bytes:
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    parts = [b"usersecrets/value", user_id.encode(), secret_id.encode()]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


class Barrier:
    def __init__(self, ring: KeyRing, random: Callable[[int], bytes] = os.urandom) -> None:
        self.ring = ring
        self._random = random

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        key_id = self.ring.active_id
        key = self.ring.key(key_id)
        assert key is not None
        header = bytes([VERSION]) + key_id.encode("ascii")
        nonce = self._random(NONCE_LEN)
        assert len(nonce) == NONCE_LEN, "the random source returned a short nonce"
        return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        key_id = self.key_id_of(blob)
        key = self.ring.key(key_id)
        if key is None:
            raise errors.DecryptionFailed(f"unknown key id {key_id}")
        nonce = blob[HEADER_LEN : HEADER_LEN + NONCE_LEN]
        try:
            return AESGCM(key).decrypt(nonce, blob[HEADER_LEN + NONCE_LEN :], blob[:HEADER_LEN] + aad)
        except InvalidTag:
            raise errors.DecryptionFailed("authentication failed") from None

    def key_id_of(self, blob: bytes) -> str:
        if len(blob) < MIN_SEALED_LEN or blob[0] != VERSION:
            raise errors.DecryptionFailed("malformed ciphertext")
        raw = blob[1:HEADER_LEN]
        if any(b not in b"0123456789abcdef" for b in raw):
            raise errors.DecryptionFailed("malformed ciphertext")
        return raw.decode("ascii")


def generate_key_spec() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def load_or_create_key_file(path: str) -> str:
    """Development mode only: the key lives in a 0600 file beside the data."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away from the mode given to open
        spec = generate_key_spec()
        os.write(fd, (spec + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return spec


def _read_key_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise ValueError(f"key file {path} is readable by group or others (mode {mode:04o}); chmod 600 it")
        with os.fdopen(os.dup(fd), "rb") as f:
            spec = f.read().decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    try:
        KeyRing.parse(spec)
    except ValueError as exc:
        raise ValueError(f"key file {path}: {exc}") from None
    return spec


def key_ring_from_config(config: ServerConfig) -> KeyRing:
    if config.encryption_keys.strip():
        return KeyRing.parse(config.encryption_keys)
    if config.key_file:
        return KeyRing.parse(load_or_create_key_file(config.key_file))
    raise ValueError(
        "no encryption key configured: set USERSECRETS_ENCRYPTION_KEYS (--encryption-keys) to "
        "comma-separated base64 of 32-byte keys, or USERSECRETS_KEY_FILE (--key-file) in development"
    )
