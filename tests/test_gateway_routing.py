"""Routes from the proto's descriptors, and the router's NONE / PARTIAL / FULL dispatch."""

from __future__ import annotations

import pytest

from usersecrets.gateway.codec import Codecs
from usersecrets.gateway.httprule import parse
from usersecrets.gateway.pattern import PathEncodingError, Pattern
from usersecrets.gateway.router import CACHE_PATH_MAX, CACHE_SIZE, Match, Route, Router
from usersecrets.gateway.routes import build_routes
from usersecrets.v1 import usersecrets_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["UserSecretsService"]


def test_routes_come_from_the_annotations() -> None:
    got = [
        (
            r.http_method,
            r.template.source,
            r.rpc_path.rsplit("/", 1)[1],
            r.binding.body,
            r.response_body,
            r.success_status,
        )
        for r in build_routes(SERVICE, Codecs())
    ]
    assert got == [
        ("POST", "/api/v2/users/{user}/secrets", "CreateUserSecret", "*", "", 201),
        ("GET", "/api/v2/users/{user}/secrets", "ListUserSecrets", "", "secrets", 200),
        ("GET", "/api/v2/users/{user}/secrets/{name}", "GetUserSecret", "", "", 200),
        ("PATCH", "/api/v2/users/{user}/secrets/{name}", "UpdateUserSecret", "*", "", 200),
        ("DELETE", "/api/v2/users/{user}/secrets/{name}", "DeleteUserSecret", "", "", 204),
    ]


def test_values_rpc_has_no_route() -> None:
    assert all(not r.rpc_path.endswith("ListUserSecretValues") for r in build_routes(SERVICE, Codecs()))


def _router() -> Router[str]:
    routes = [Route(r.http_method, r.pattern, r.method.name) for r in build_routes(SERVICE, Codecs())]
    routes.append(Route("GET", Pattern.compile(parse("/healthz")), "healthz"))
    return Router(routes)


CASES = [
    ("list", "GET", "/api/v2/users/me/secrets", Match.FULL, "ListUserSecrets", {"user": "me"}, ()),
    ("create", "POST", "/api/v2/users/u1/secrets", Match.FULL, "CreateUserSecret", {"user": "u1"}, ()),
    ("get", "GET", "/api/v2/users/me/secrets/k", Match.FULL, "GetUserSecret", {"user": "me", "name": "k"}, ()),
    ("patch", "PATCH", "/api/v2/users/me/secrets/k", Match.FULL, "UpdateUserSecret", {"user": "me", "name": "k"}, ()),
    ("delete", "DELETE", "/api/v2/users/me/secrets/k", Match.FULL, "DeleteUserSecret", {"user": "me", "name": "k"}, ()),
    ("healthz", "GET", "/healthz", Match.FULL, "healthz", {}, ()),
    ("collection wrong method", "PUT", "/api/v2/users/me/secrets", Match.PARTIAL, None, None, ("POST", "GET")),
    ("item wrong method", "POST", "/api/v2/users/me/secrets/k", Match.PARTIAL, None, None, ("GET", "PATCH", "DELETE")),
    ("head is not get", "HEAD", "/healthz", Match.PARTIAL, None, None, ("GET",)),
    ("unknown", "GET", "/api/v2/users/me", Match.NONE, None, None, ()),
    ("method does not rescue a bad path", "GET", "/nope", Match.NONE, None, None, ()),
]


@pytest.mark.parametrize(
    ("method", "path", "match", "endpoint", "values", "allow"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_resolve(
    method: str,
    path: str,
    match: Match,
    endpoint: str | None,
    values: dict[str, str] | None,
    allow: tuple[str, ...],
) -> None:
    got = _router().resolve(method, path)
    summary = (got.match, got.route.endpoint if got.route else None, got.values, got.allow)
    assert summary == (match, endpoint, values, allow), f"resolve({method} {path}) = {summary}"


def test_recent_resolutions_are_reused_and_bounded() -> None:
    router = _router()
    first = router.resolve("GET", "/api/v2/users/me/secrets/k")
    assert router.resolve("GET", "/api/v2/users/me/secrets/k") is first
    assert router.resolve("DELETE", "/api/v2/users/me/secrets/k").route is not first.route  # keyed by method too
    for i in range(CACHE_SIZE + 10):
        assert router.resolve("GET", f"/api/v2/users/me/secrets/k{i}").values == {"user": "me", "name": f"k{i}"}
    assert 0 < len(router._recent) <= CACHE_SIZE
    long_path = "/api/v2/users/me/secrets/" + "a" * CACHE_PATH_MAX
    assert router.resolve("GET", long_path).match is Match.FULL
    assert ("GET", long_path) not in router._recent


def test_a_path_that_cannot_be_decoded_fails_every_time() -> None:
    router = _router()
    for _ in range(2):
        with pytest.raises(PathEncodingError):
            router.resolve("GET", "/api/v2/users/me/secrets/%ZZ")
    assert ("GET", "/api/v2/users/me/secrets/%ZZ") not in router._recent
