"""Plain records passed between the service rules and storage."""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_ROLE = "secret-injector"  # may call ListUserSecretValues for any user


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One secret as kept in Redis. `ciphertext` is the sealed value; `value_len` its plaintext byte length."""

    id: str
    name: str
    description: str
    env_name: str
    file_path: str
    created_at_us: int
    updated_at_us: int
    ciphertext: bytes
    key_id: str
    value_len: int


@dataclass(frozen=True, slots=True)
class SecretChanges:
    """A PATCH: None leaves a field alone. The value arrives sealed, with its plaintext length."""

    description: str | None = None
    env_name: str | None = None
    file_path: str | None = None
    ciphertext: bytes | None = None
    key_id: str | None = None
    value_len: int | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    roles: tuple[str, ...] = ()
    created_at_us: int = 0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's user. Roles are loaded only where a rule needs them."""

    user_id: str
    token_id: str
    # Seconds the token had left when it was verified (None: not known); bounds any cache of this answer.
    expires_in: float | None = None
