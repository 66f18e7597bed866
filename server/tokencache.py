"""A short-lived, bounded cache of verified tokens, so a busy caller is not re-verified in Redis on every call.

Only successes are cached, keyed by a SHA-256 of the whole token (the token itself is never kept). An entry
lives at most `ttl` seconds and never past the token's own expiry, so a revoked token stops working within
`ttl` seconds on every replica (USERSECRETS_TOKEN_CACHE_SECONDS; 0 turns the cache off). At most
`max_entries` tokens are kept, least recently used first out.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import Principal


class CachedAuthenticator:
    def __init__(
        self,
        identity: IdentityStore,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert ttl > 0 and max_entries >= 1
        self._identity = identity
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    async def authenticate(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None:
            if hit[0] > now:
                self._entries.move_to_end(key)
                return hit[1]
            del self._entries[key]
        principal = await self._identity.authenticate(token)
        until = now + self._ttl
        if principal.expires_in is not None:
            until = min(until, now + principal.expires_in)
        self._entries[key] = (until, principal)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._entries)
