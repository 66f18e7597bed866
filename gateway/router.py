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


class Router(Generic[E]):
    def __init__(self, routes: Sequence[Route[E]]) -> None:
        self.routes = tuple(routes)

    def resolve(self, method: str, raw_path: str) -> Resolved[E]:
        """May raise PathEncodingError when the path fits a route but a value cannot be decoded."""
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
