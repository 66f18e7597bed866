"""Users and session tokens in Redis (key layout in keys.py).

Tokens follow Coder's shape, `<id>-<secret>`: a 10-character id to look the token up by and a
22-character secret of which only the SHA-256 is stored, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable, Sequence

from usersecrets.server import errors, keys
from usersecrets.server.model import Principal, User
from usersecrets.server.reads import PipelinedReads
from usersecrets.server.store import redis_errors

USERNAME_RE = re.compile(r"^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$")
USERNAME_MAX = 32
ROLE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63}$")
TOKEN_ID_LEN = 10
TOKEN_SECRET_LEN = 22
TOKEN_RE = re.compile(rf"^([a-zA-Z0-9]{{{TOKEN_ID_LEN}}})-([a-zA-Z0-9]{{{TOKEN_SECRET_LEN}}})$")
_ALPHABET = string.ascii_letters + string.digits

INVALID_FORMAT = "Invalid API key format."
INVALID_KEY = "API key is invalid."
EXPIRED = "API key expired."

_GRANT_ROLE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local roles = redis.call('HGET', KEYS[1], 'roles') or ''
for role in string.gmatch(roles, '[^,]+') do
  if role == ARGV[1] then return 0 end
end
if roles == '' then roles = ARGV[1] else roles = roles .. ',' .. ARGV[1] end
redis.call('HSET', KEYS[1], 'roles', roles)
return 1
"""

_NEW_SESSION_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'hash', ARGV[2], 'created_at', ARGV[3], 'expires_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


def check_username(username: str) -> None:
    if not username or len(username) > USERNAME_MAX or not USERNAME_RE.fullmatch(username):
        raise ValueError(
            f"invalid username: use 1-{USERNAME_MAX} letters, digits and single hyphens, "
            "not starting or ending with a hyphen"
        )


def _check_role(role: str) -> None:
    if not ROLE_RE.fullmatch(role):
        raise ValueError("invalid role: use 1-64 letters, digits and . _ : - , starting with a letter or digit")


def _text(raw: bytes | None) -> str:
    return raw.decode() if raw is not None else ""


def _user_from_hash(fields: dict[bytes, bytes]) -> User | None:
    if not fields:
        return None
    roles = _text(fields.get(b"roles"))
    return User(
        id=_text(fields.get(b"id")),
        username=_text(fields.get(b"username")),
        roles=tuple(r for r in roles.split(",") if r),
        created_at_us=int(fields.get(b"created_at") or 0),
    )


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _digest(token_secret: str) -> str:
    return hashlib.sha256(token_secret.encode()).hexdigest()


class IdentityStore:
    def __init__(  # type: ignore[no-untyped-def]
        self, redis, clock: Callable[[], float] = time.time, reads: PipelinedReads | None = None
    ) -> None:
        self._redis = redis
        self._hgetall = reads.hgetall if reads is not None else redis.hgetall
        self._clock = clock
        self._grant_role = redis.register_script(_GRANT_ROLE_LUA)
        self._create_token = redis.register_script(_NEW_SESSION_LUA)

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    async def create_user(self, username: str, roles: Sequence[str] = ()) -> User:
        check_username(username)
        for role in roles:
            _check_role(role)
        user = User(
            id=str(uuid.uuid4()),
            username=username,
            roles=tuple(dict.fromkeys(roles)),
            created_at_us=self._now_us(),
        )
        user_key = keys.user(user.id)
        with redis_errors():
            # The username claim is the commit point: until it succeeds nobody can reach the new id.
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(
                user_key,
                mapping={
                    "id": user.id,
                    "username": user.username,
                    "roles": ",".join(user.roles),
                    "created_at": str(user.created_at_us),
                },
            )
            pipe.sadd(keys.USERS, user.id)
            await pipe.execute()
            claimed = await self._redis.set(keys.username(username), user.id, nx=True)
            if not claimed:
                pipe = self._redis.pipeline(transaction=False)
                pipe.delete(user_key)
                pipe.srem(keys.USERS, user.id)
                await pipe.execute()
                raise ValueError("username is already taken")
        return user

    async def user_by_id(self, user_id: str) -> User | None:
        with redis_errors():
            return _user_from_hash(await self._redis.hgetall(keys.user(user_id)))

    async def user_by_name(self, username: str) -> User | None:
        if not username or len(username) > USERNAME_MAX:
            return None
        with redis_errors():
            user_id = await self._redis.get(keys.username(username))
        if user_id is None:
            return None
        return await self.user_by_id(user_id.decode())

    async def grant_role(self, user_id: str, role: str) -> User:
        _check_role(role)
        with redis_errors():
            found = await self._grant_role(keys=[keys.user(user_id)], args=[role])
        user = await self.user_by_id(user_id) if found != -1 else None
        if user is None:
            raise LookupError("no such user")
        return user

    async def create_token(self, user_id: str, lifetime_seconds: float) -> tuple[str, str]:
        if not math.isfinite(lifetime_seconds) or lifetime_seconds <= 0:
            raise ValueError("token lifetime must be a positive number of seconds")
        with redis_errors():
            if not await self._redis.exists(keys.user(user_id)):
                raise LookupError("no such user")
            created = self._now_us()
            expires = created + int(lifetime_seconds * 1_000_000)
            # Redis drops the key around expires_at too; the relative expiry keeps that true under a
            # test clock, and the stored expires_at stays the authority.
            ttl_ms = max(1, math.ceil(lifetime_seconds * 1000))
            while True:
                token_id, token_secret = _random_text(TOKEN_ID_LEN), _random_text(TOKEN_SECRET_LEN)
                args = [user_id, _digest(token_secret), created, expires, ttl_ms]
                if await self._create_token(keys=[keys.token(token_id)], args=args):
                    return token_id, f"{token_id}-{token_secret}"

    async def authenticate(self, token: str) -> Principal:
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            raise errors.Unauthenticated(INVALID_FORMAT)
        token_id, token_secret = match.groups()
        with redis_errors():
            fields = await self._hgetall(keys.token(token_id))
        stored_hash = fields.get(b"hash")
        if stored_hash is None or not hmac.compare_digest(stored_hash, _digest(token_secret).encode()):
            raise errors.Unauthenticated(INVALID_KEY)
        left_us = int(fields.get(b"expires_at") or 0) - self._now_us()
        if left_us <= 0:
            raise errors.Unauthenticated(EXPIRED)
        return Principal(user_id=_text(fields.get(b"user_id")), token_id=token_id, expires_in=left_us / 1_000_000)

    async def revoke_token(self, token_id: str) -> bool:
        with redis_errors():
            return bool(await self._redis.delete(keys.token(token_id)))
