"""Typed requests and responses of the REST API (CONTRACT.md section 2), with their JSON forms.

Values are write-only: they appear in requests only, and never in a `repr`, so a request object that lands in
a log or a traceback does not leak its secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class UserSecret:
    """A secret's metadata, as every read and write answers it."""

    id: str
    name: str
    description: str
    env_name: str
    file_path: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, data: Any) -> UserSecret:
        if not isinstance(data, dict):
            raise ValueError(f"a UserSecret is a JSON object, got {type(data).__name__}")
        texts = {}
        for key in ("id", "name", "description", "env_name", "file_path"):
            value = data.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"UserSecret.{key} is not a string")
            texts[key] = value
        return cls(
            **texts,
            created_at=parse_timestamp(data.get("created_at")),
            updated_at=parse_timestamp(data.get("updated_at")),
        )

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "env_name": self.env_name,
            "file_path": self.file_path,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class CreateUserSecretRequest:
    name: str
    value: str = field(repr=False)
    description: str = ""
    env_name: str = ""
    file_path: str = ""

    def to_json(self) -> dict[str, str]:
        # Empty optional fields are sent anyway: the server treats "" and absent alike on create.
        return {
            "name": self.name,
            "value": self.value,
            "description": self.description,
            "env_name": self.env_name,
            "file_path": self.file_path,
        }


@dataclass(frozen=True, slots=True)
class UpdateUserSecretRequest:
    """None leaves a field alone; "" sets it empty. The name cannot change."""

    value: str | None = field(default=None, repr=False)
    description: str | None = None
    env_name: str | None = None
    file_path: str | None = None

    def to_json(self) -> dict[str, str]:
        fields = {
            "value": self.value,
            "description": self.description,
            "env_name": self.env_name,
            "file_path": self.file_path,
        }
        return {key: value for key, value in fields.items() if value is not None}

    def is_empty(self) -> bool:
        return not self.to_json()


@dataclass(frozen=True, slots=True)
class Validation:
    """One broken field rule, as the server lists it in an error body."""

    field: str
    detail: str


@dataclass(frozen=True, slots=True)
class UserSecretValue:
    """A secret with its value: only the gRPC-only `ListUserSecretValues` returns these."""

    secret: UserSecret
    value: str = field(repr=False)


def parse_timestamp(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ValueError("a timestamp is an RFC 3339 string")
    # fromisoformat reads "Z" since Python 3.11, and any fraction width.
    parsed = datetime.fromisoformat(raw)
    if parsed.tzinfo is None:
        raise ValueError("a timestamp needs a UTC offset")
    return parsed


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
