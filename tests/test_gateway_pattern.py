"""Path matching on raw paths: the google.api.http spec's examples, percent-decoding once, and verbs."""

from __future__ import annotations

import pytest

from usersecrets.gateway.httprule import parse
from usersecrets.gateway.pattern import PathEncodingError, Pattern, decode_keeping_slashes, decode_segment

OURS = "/api/v2/users/{user}/secrets/{name}"

CASES = [
    # (id, template, raw path, expected values or None for "no match")
    ("spec get message", "/v1/messages/{message_id}", "/v1/messages/123456", {"message_id": "123456"}),
    (
        "spec sub field",
        "/v1/messages/{message_id}/{sub.subfield}",
        "/v1/messages/123456/foo",
        {"message_id": "123456", "sub.subfield": "foo"},
    ),
    ("spec name with literal", "/v1/{name=messages/*}", "/v1/messages/123456", {"name": "messages/123456"}),
    ("spec literal mismatch", "/v1/{name=messages/*}", "/v1/letters/123456", None),
    (
        "spec shelves and books",
        "/v1/{name=shelves/*/books/*}",
        "/v1/shelves/s1/books/b2",
        {"name": "shelves/s1/books/b2"},
    ),
    ("literal only", "/v1/messages", "/v1/messages", {}),
    ("literal too long", "/v1/messages", "/v1/messages/x", None),
    ("literal too short", "/v1/messages/x", "/v1/messages", None),
    ("literal is case sensitive", "/v1/messages", "/v1/Messages", None),
    ("literal matched after decoding", "/v1/messages", "/v1/%6Dessages", {}),
    ("var star", "/v1/{name=*}", "/v1/abc", {"name": "abc"}),
    ("var does not cross slash", "/v1/{name}", "/v1/a/b", None),
    ("var needs a non-empty segment", "/v1/{name}/x", "/v1//x", None),
    ("trailing slash is another path", "/v1/{name}", "/v1/abc/", None),
    ("unnamed wildcard", "/v1/*/x", "/v1/anything/x", {}),
    ("deep matches many", "/v1/{name=**}", "/v1/a/b/c", {"name": "a/b/c"}),
    ("deep matches one", "/v1/{name=**}", "/v1/a", {"name": "a"}),
    ("deep matches zero", "/v1/{name=**}", "/v1", {"name": ""}),
    ("deep after literal", "/v1/{name=files/**}", "/v1/files/a/b", {"name": "files/a/b"}),
    ("deep wildcard unbound", "/v1/**", "/v1/x/y", {}),
    # Percent-decoding: single-segment variables decode everything, exactly once.
    ("space", OURS, "/api/v2/users/me/secrets/my%20key", {"user": "me", "name": "my key"}),
    ("percent sign", OURS, "/api/v2/users/me/secrets/100%25", {"user": "me", "name": "100%"}),
    ("decoded once only", OURS, "/api/v2/users/me/secrets/a%2520b", {"user": "me", "name": "a%20b"}),
    ("encoded slash stays in segment", OURS, "/api/v2/users/me/secrets/a%2Fb", {"user": "me", "name": "a/b"}),
    ("encoded question mark", OURS, "/api/v2/users/me/secrets/a%3Fb", {"user": "me", "name": "a?b"}),
    ("utf8", OURS, "/api/v2/users/me/secrets/%C3%A9t%C3%A9", {"user": "me", "name": "été"}),
    ("plus is not space", OURS, "/api/v2/users/me/secrets/a+b", {"user": "me", "name": "a+b"}),
    ("colon in name without verb", OURS, "/api/v2/users/me/secrets/a:b", {"user": "me", "name": "a:b"}),
    # Multi-segment variables keep %2F as is, so the value still splits on '/' unambiguously.
    ("deep keeps encoded slash", "/v1/{name=**}", "/v1/a%2Fb/c%20d", {"name": "a%2Fb/c d"}),
    ("deep keeps lower encoded slash", "/v1/{name=**}", "/v1/a%2fb", {"name": "a%2fb"}),
    ("multi keeps encoded slash", "/v1/{name=shelves/*}", "/v1/shelves/a%2Fb", {"name": "shelves/a%2Fb"}),
    # Verbs.
    ("verb", "/v1/messages:batchGet", "/v1/messages:batchGet", {}),
    ("verb missing", "/v1/messages:batchGet", "/v1/messages", None),
    ("verb wrong", "/v1/messages:batchGet", "/v1/messages:batchPut", None),
    ("verb after var", "/v1/{name=projects/*}:cancel", "/v1/projects/p1:cancel", {"name": "projects/p1"}),
    ("verb after deep", "/v1/{name=**}:undelete", "/v1/a/b:undelete", {"name": "a/b"}),
    ("verb value keeps colons", "/v1/{name}:cancel", "/v1/a:b:cancel", {"name": "a:b"}),
    ("no verb in template, path has one", "/v1/{name}", "/v1/x:cancel", {"name": "x:cancel"}),
]


@pytest.mark.parametrize(("template", "path", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match(template: str, path: str, want: dict[str, str] | None) -> None:
    got = Pattern.compile(parse(template)).match(path)
    assert got == want, f"Match({template!r}, {path!r}) = {got!r}; want {want!r}"


BAD = [
    ("malformed escape", "/api/v2/users/me/secrets/%zz"),
    ("truncated escape", "/api/v2/users/me/secrets/ab%4"),
    ("not utf8", "/api/v2/users/me/secrets/%FF%FE"),
]


@pytest.mark.parametrize("path", [c[1] for c in BAD], ids=[c[0] for c in BAD])
def test_match_rejects_bad_encoding(path: str) -> None:
    with pytest.raises(PathEncodingError):
        Pattern.compile(parse(OURS)).match(path)


def test_bad_encoding_on_other_route_is_no_match() -> None:
    assert Pattern.compile(parse("/v1/x")).match("/v2/%zz") is None


@pytest.mark.parametrize(
    ("raw", "single", "multi"),
    [
        ("abc", "abc", "abc"),
        ("a%2Fb", "a/b", "a%2Fb"),
        ("%25%2F", "%/", "%%2F"),
        ("%7E", "~", "~"),
    ],
)
def test_decoders(raw: str, single: str, multi: str) -> None:
    assert (decode_segment(raw), decode_keeping_slashes(raw)) == (single, multi)
