"""Dispatch a method and raw path to an endpoint, telling 404 from 405 the way Starlette does.

Every route answers a match with NONE, PARTIAL (the path fits, the method does not) or FULL. The first FULL
wins; otherwise any PARTIAL makes a 405 whose `Allow` lists every method the path accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from usersecrets.gateway.pattern import Pattern

E = TypeVar("E")


class Match(Enum):
    NONE = 0
    PARTIAL = 1
    FULL = 2


@dataclass(frozen=True, slots=True)
class Route(Generic[E]):
    method: str
    pattern: Pattern
    endpoint: E

    def matches(self, method: str, raw_path: str) -> tuple[Match, dict[str, str]]:
        values = self.pattern.match(raw_path)
        if values is None:
            return Match.NONE, {}
        return (Match.FULL if method == self.method else Match.PARTIAL), values


@dataclass(frozen=True, slots=True)
class Resolved(Generic[E]):
    match: Match
    route: Route[E] | None = None
    values: dict[str, str] | None = None
    allow: tuple[str, ...] = ()


CACHE_SIZE = 4096
CACHE_PATH_MAX = 512  # longer paths are matched every time: the cache stays small whatever clients send


class Router(Generic[E]):
    def __init__(self, routes: Sequence[Route[E]]) -> None:
        self.routes = tuple(routes)
        # resolve() is a pure function of (method, raw path), and callers only read what it returns: recent answers
        # are kept, bounded (emptied when full), so a busy path is matched once, not once per request.
        self._recent: dict[tuple[str, str], Resolved[E]] = {}

    def resolve(self, method: str, raw_path: str) -> Resolved[E]:
        """May raise PathEncodingError when the path fits a route but a value cannot be decoded."""
        key = (method, raw_path)
        found = self._recent.get(key)
        if found is None:
            found = self._resolve(method, raw_path)
            if len(raw_path) <= CACHE_PATH_MAX:
                if len(self._recent) >= CACHE_SIZE:
                    self._recent.clear()
                self._recent[key] = found
        return found

    def _resolve(self, method: str, raw_path: str) -> Resolved[E]:
        allow: list[str] = []
        for route in self.routes:
            match, values = route.matches(method, raw_path)
            if match is Match.FULL:
                return Resolved(Match.FULL, route, values)
            if match is Match.PARTIAL and route.method not in allow:
                allow.append(route.method)
        if allow:
            return Resolved(Match.PARTIAL, allow=tuple(allow))
        return Resolved(Match.NONE)
