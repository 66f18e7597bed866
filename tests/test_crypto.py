from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from usersecrets.server import crypto, errors
from usersecrets.server.config import ServerConfig

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
SPEC1 = base64.b64encode(K1).decode()
SPEC2 = base64.b64encode(K2).decode()
CANARY = b"canary-7f3e-secret-value"


def kid(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def barrier(spec: str = SPEC1, nonce: bytes = b"\x07" * 12) -> crypto.Barrier:
    return crypto.Barrier(crypto.KeyRing.parse(spec), random=lambda n: nonce[:n])


AAD_A1 = crypto.associated_data("user-a", "secret-1")


# --- key ring --------------------------------------------------------------------------------------


def test_ring_parses_ordered_keys_first_active() -> None:
    ring = crypto.KeyRing.parse(f" {SPEC2} , {SPEC1} ")
    assert ring.ids == (kid(K2), kid(K1))
    assert ring.active_id == kid(K2)
    assert ring.key(kid(K1)) == K1
    assert ring.key(kid(K2)) == K2
    assert ring.key("00000000") is None


def test_ring_repr_hides_keys() -> None:
    ring = crypto.KeyRing.parse(SPEC1)
    assert SPEC1 not in repr(ring)
    assert repr(K1) not in repr(ring)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", "empty"),
        (" , ", "empty"),
        (f"{SPEC1},", "#2 is empty"),
        ("not base64!!", "#1 is not valid base64"),
        ("é", "#1 is not valid base64"),
        (base64.b64encode(b"short").decode(), "#1 is 5 bytes; expected 32"),
        (base64.b64encode(bytes(33)).decode(), "#1 is 33 bytes; expected 32"),
        (f"{SPEC1},{SPEC1}", "#2 repeats an earlier key"),
    ],
    ids=["empty", "only-commas", "trailing-comma", "bad-base64", "non-ascii", "short", "long", "duplicate"],
)
def test_ring_rejects_bad_specs_without_echoing_them(spec: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as info:
        crypto.KeyRing.parse(spec)
    if spec.strip(" ,"):
        assert spec.split(",")[0] not in str(info.value)


def test_generate_key_spec_is_a_valid_single_key() -> None:
    one, two = crypto.generate_key_spec(), crypto.generate_key_spec()
    assert one != two
    assert len(crypto.KeyRing.parse(one).ids) == 1


# --- barrier ---------------------------------------------------------------------------------------


def test_seal_format_and_round_trip() -> None:
    blob = barrier().seal(CANARY, AAD_A1)
    assert blob[0] == 0x01
    assert blob[1:9] == kid(K1).encode()
    assert blob[9:21] == b"\x07" * 12
    assert len(blob) == 1 + 8 + 12 + len(CANARY) + 16
    assert CANARY not in blob
    assert blob != CANARY
    assert barrier().open(blob, AAD_A1) == CANARY
    assert barrier().key_id_of(blob) == kid(K1)


def test_injected_randomness_makes_seal_deterministic_and_default_does_not() -> None:
    assert barrier().seal(CANARY, AAD_A1) == barrier().seal(CANARY, AAD_A1)
    real = crypto.Barrier(crypto.KeyRing.parse(SPEC1))
    first, second = real.seal(CANARY, AAD_A1), real.seal(CANARY, AAD_A1)
    assert first != second
    assert real.open(first, AAD_A1) == real.open(second, AAD_A1) == CANARY


def test_empty_value_round_trips() -> None:
    blob = barrier().seal(b"", AAD_A1)
    assert barrier().open(blob, AAD_A1) == b""


def expected_flip_detail(blob: bytes, index: int) -> str:
    if index == 0:
        return "malformed ciphertext"
    if index < 9:
        flipped = bytearray(blob[1:9])
        flipped[index - 1] ^= 0x01
        text = flipped.decode("latin-1")
        return f"unknown key id {text}" if all(c in "0123456789abcdef" for c in text) else "malformed ciphertext"
    return "authentication failed"


@pytest.mark.parametrize("index", range(1 + 8 + 12 + len(CANARY) + 16))
def test_flipped_byte_anywhere_fails(index: int) -> None:
    original = barrier().seal(CANARY, AAD_A1)
    blob = bytearray(original)
    blob[index] ^= 0x01
    with pytest.raises(errors.DecryptionFailed) as info:
        barrier().open(bytes(blob), AAD_A1)
    want = expected_flip_detail(original, index)
    assert info.value.detail == want, f"flip at {index}: detail {info.value.detail!r}; want {want!r}"
    assert CANARY.decode() not in str(info.value)


@pytest.mark.parametrize(
    ("user_id", "secret_id"),
    [("user-a", "secret-2"), ("user-b", "secret-1"), ("user-as", "ecret-1"), ("", "")],
    ids=["other-secret", "other-user", "shifted-boundary", "empty"],
)
def test_value_moved_to_other_owner_or_secret_fails(user_id: str, secret_id: str) -> None:
    blob = barrier().seal(CANARY, AAD_A1)
    with pytest.raises(errors.DecryptionFailed) as info:
        barrier().open(blob, crypto.associated_data(user_id, secret_id))
    assert info.value.detail == "authentication failed"


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x01", b"\x01" + b"a" * 35, b"\x02" + kid(K1).encode() + bytes(40), b"\x01ZZZZZZZZ" + bytes(40)],
    ids=["empty", "version-only", "one-short", "unknown-version", "non-hex-key-id"],
)
def test_malformed_blobs_fail_clearly(blob: bytes) -> None:
    with pytest.raises(errors.DecryptionFailed) as info:
        barrier().open(blob, AAD_A1)
    assert info.value.detail == "malformed ciphertext"
    assert info.value.message == errors.DECRYPTION_FAILED


def test_unknown_key_id_fails_clearly() -> None:
    blob = barrier(SPEC2).seal(CANARY, AAD_A1)
    with pytest.raises(errors.DecryptionFailed) as info:
        barrier(SPEC1).open(blob, AAD_A1)
    assert info.value.detail == f"unknown key id {kid(K2)}"


def test_new_first_key_seals_new_and_opens_old() -> None:
    old = barrier(SPEC1).seal(CANARY, AAD_A1)
    rotated = barrier(f"{SPEC2},{SPEC1}")
    assert rotated.open(old, AAD_A1) == CANARY
    new = rotated.seal(CANARY, AAD_A1)
    assert rotated.key_id_of(new) == kid(K2)
    assert rotated.open(new, AAD_A1) == CANARY
    with pytest.raises(errors.DecryptionFailed):
        barrier(SPEC1).open(new, AAD_A1)


def test_key_id_header_is_authenticated() -> None:
    # Same key bytes under a forged header must not open: the header is part of the associated data.
    blob = barrier(f"{SPEC1},{SPEC2}").seal(CANARY, AAD_A1)
    forged = blob[:1] + kid(K2).encode() + blob[9:]
    with pytest.raises(errors.DecryptionFailed, match="authentication failed"):
        barrier(f"{SPEC1},{SPEC2}").open(forged, AAD_A1)


# --- key file and configuration --------------------------------------------------------------------


def test_key_file_created_0600_despite_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "key"
    old = os.umask(0)
    try:
        spec = crypto.load_or_create_key_file(str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == spec
    assert len(crypto.KeyRing.parse(spec).ids) == 1
    assert crypto.load_or_create_key_file(str(path)) == spec


def test_key_file_created_0600_despite_restrictive_umask(tmp_path: Path) -> None:
    path = tmp_path / "key"
    old = os.umask(0o477)
    try:
        spec = crypto.load_or_create_key_file(str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.load_or_create_key_file(str(path)) == spec


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=["group", "world", "both"])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    path.write_text(SPEC1)
    path.chmod(mode)
    with pytest.raises(ValueError, match=f"readable by group or others \\(mode {mode:04o}\\)") as info:
        crypto.load_or_create_key_file(str(path))
    assert SPEC1 not in str(info.value)


def test_key_file_with_garbage_is_refused_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("garbage-key-text")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="not valid base64") as info:
        crypto.load_or_create_key_file(str(path))
    assert "garbage-key-text" not in str(info.value)


def test_key_file_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text(SPEC1)
    target.chmod(0o600)
    (tmp_path / "key").symlink_to(target)
    with pytest.raises(OSError):
        crypto.load_or_create_key_file(str(tmp_path / "key"))


def test_config_keys_win_over_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    ring = crypto.key_ring_from_config(ServerConfig(encryption_keys=f"{SPEC2},{SPEC1}", key_file=str(path)))
    assert ring.ids == (kid(K2), kid(K1))
    assert not path.exists()


def test_config_key_file_dev_mode(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = crypto.key_ring_from_config(ServerConfig(key_file=str(path)))
    again = crypto.key_ring_from_config(ServerConfig(key_file=str(path)))
    assert first.ids == again.ids
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_config_without_any_key_refuses() -> None:
    with pytest.raises(ValueError, match="no encryption key configured"):
        crypto.key_ring_from_config(ServerConfig())
