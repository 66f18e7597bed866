"""The rules of the service as plain async functions over its stores. No gRPC here: the servicer translates.

Order of checks on every call, as in Coder: the token (done by the interceptor), then `{user}` (400 when it
names nobody, 403 when it names someone else, decided before any secret is looked up), then the body, then
storage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from usersecrets.server import validation
from usersecrets.server.crypto import Barrier, associated_data
from usersecrets.server.errors import (
    BadUserParam,
    NoFieldsToUpdate,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SERVICE_ROLE, Principal, SecretChanges, StoredSecret
from usersecrets.server.store import SecretStore


def _now_us() -> int:
    return time.time_ns() // 1000


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class NewSecret:
    name: str
    value: str
    description: str = ""
    env_name: str = ""
    file_path: str = ""


@dataclass(frozen=True, slots=True)
class SecretPatch:
    value: str | None = None
    description: str | None = None
    env_name: str | None = None
    file_path: str | None = None

    def is_empty(self) -> bool:
        return self.value is None and self.description is None and self.env_name is None and self.file_path is None


class SecretsService:
    # An update re-reads the secret's id if it was replaced between the read and the write.
    UPDATE_ATTEMPTS = 3

    def __init__(
        self,
        store: SecretStore,
        identity: IdentityStore,
        barrier: Barrier,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self._store = store
        self._identity = identity
        self._barrier = barrier
        self._clock_us = clock_us

    async def resolve_user(self, principal: Principal, user: str) -> str:
        """The id of the user `{user}` names; only the caller themself passes."""
        if user == "me" or user == principal.user_id:
            return principal.user_id
        target = await self._find_user_id(user)
        if target == principal.user_id:
            return target
        raise PermissionDenied()

    async def _find_user_id(self, user: str) -> str:
        if not user:
            raise BadUserParam()
        found = await self._identity.user_by_id(str(uuid.UUID(user))) if _is_uuid(user) else None
        if found is None:
            # A legal username can look like a UUID (32 hex digits), so a miss by id falls back to the name.
            found = await self._identity.user_by_name(user)
        if found is None:
            raise BadUserParam()
        return found.id

    def _seal(self, user_id: str, secret_id: str, value: str) -> tuple[bytes, str, int]:
        plaintext = value.encode()
        blob = self._barrier.seal(plaintext, associated_data(user_id, secret_id))
        return blob, self._barrier.key_id_of(blob), len(plaintext)

    async def create(self, principal: Principal, user: str, new: NewSecret) -> StoredSecret:
        user_id = await self.resolve_user(principal, user)
        violations = validation.create_violations(
            name=new.name,
            value=new.value,
            description=new.description,
            env_name=new.env_name,
            file_path=new.file_path,
        )
        if violations:
            raise ValidationFailed(violations)
        secret_id = str(uuid.uuid4())
        ciphertext, key_id, value_len = self._seal(user_id, secret_id, new.value)
        now = self._clock_us()
        secret = StoredSecret(
            id=secret_id,
            name=new.name,
            description=new.description,
            env_name=new.env_name,
            file_path=new.file_path,
            created_at_us=now,
            updated_at_us=now,
            ciphertext=ciphertext,
            key_id=key_id,
            value_len=value_len,
        )
        return await self._store.create(user_id, secret)

    async def list(self, principal: Principal, user: str) -> list[StoredSecret]:
        user_id = await self.resolve_user(principal, user)
        return await self._store.list(user_id)

    async def get(self, principal: Principal, user: str, name: str) -> StoredSecret:
        user_id = await self.resolve_user(principal, user)
        return await self._store.get(user_id, name)

    async def update(self, principal: Principal, user: str, name: str, patch: SecretPatch) -> StoredSecret:
        user_id = await self.resolve_user(principal, user)
        if patch.is_empty():
            raise NoFieldsToUpdate()
        violations = validation.update_violations(
            value=patch.value,
            description=patch.description,
            env_name=patch.env_name,
            file_path=patch.file_path,
        )
        if violations:
            raise ValidationFailed(violations)
        if patch.value is None:
            changes = SecretChanges(description=patch.description, env_name=patch.env_name, file_path=patch.file_path)
            return await self._store.update(user_id, name, changes, self._clock_us())
        # The value is sealed bound to the secret's id, so read the id first and write only if it still holds.
        for _ in range(self.UPDATE_ATTEMPTS):
            secret_id = await self._store.secret_id(user_id, name)
            ciphertext, key_id, value_len = self._seal(user_id, secret_id, patch.value)
            changes = SecretChanges(
                description=patch.description,
                env_name=patch.env_name,
                file_path=patch.file_path,
                ciphertext=ciphertext,
                key_id=key_id,
                value_len=value_len,
            )
            try:
                return await self._store.update(user_id, name, changes, self._clock_us(), expected_id=secret_id)
            except NotFound:
                continue  # deleted, or deleted and created again: the next read tells which
        raise NotFound()

    async def delete(self, principal: Principal, user: str, name: str) -> None:
        user_id = await self.resolve_user(principal, user)
        await self._store.delete(user_id, name)

    async def list_values(self, principal: Principal, user: str) -> list[tuple[StoredSecret, str]]:
        """For workspace builders: every secret of `user` with its value. Needs the service role."""
        caller = await self._identity.user_by_id(principal.user_id)
        if caller is None or SERVICE_ROLE not in caller.roles:
            raise PermissionDenied()
        user_id = principal.user_id if user == "me" else await self._find_user_id(user)
        secrets = await self._store.list(user_id)
        return [(s, self._barrier.open(s.ciphertext, associated_data(user_id, s.id)).decode()) for s in secrets]
