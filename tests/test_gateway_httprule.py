"""google.api.http template parsing: the spec's shapes, and what the grammar rejects."""

from __future__ import annotations

import pytest

from usersecrets.gateway.httprule import Kind, Segment, TemplateError, Variable, parse

L = lambda text: Segment(Kind.LITERAL, text)  # noqa: E731
STAR = Segment(Kind.WILDCARD)
DEEP = Segment(Kind.DEEP_WILDCARD)

VALID = [
    ("literal", "/v1/messages", [L("v1"), L("messages")], [], None),
    ("var", "/v1/messages/{message_id}", [L("v1"), L("messages"), STAR], [Variable("message_id", 2, 3)], None),
    (
        "nested field path",
        "/v1/messages/{message_id}/{sub.subfield}",
        [L("v1"), L("messages"), STAR, STAR],
        [Variable("message_id", 2, 3), Variable("sub.subfield", 3, 4)],
        None,
    ),
    ("var equals star", "/v1/{name=*}", [L("v1"), STAR], [Variable("name", 1, 2)], None),
    (
        "var with literal sub-pattern",
        "/v1/{name=messages/*}",
        [L("v1"), L("messages"), STAR],
        [Variable("name", 1, 3)],
        None,
    ),
    (
        "var over several segments",
        "/v1/{name=shelves/*/books/*}",
        [L("v1"), L("shelves"), STAR, L("books"), STAR],
        [Variable("name", 1, 5)],
        None,
    ),
    ("deep var", "/v1/{name=**}", [L("v1"), DEEP], [Variable("name", 1, 2)], None),
    ("deep wildcard", "/v1/**", [L("v1"), DEEP], [], None),
    ("unnamed wildcard", "/v1/*/x", [L("v1"), STAR, L("x")], [], None),
    ("verb", "/v1/messages:batchGet", [L("v1"), L("messages")], [], "batchGet"),
    (
        "verb after var",
        "/v1/{name=projects/*}:cancel",
        [L("v1"), L("projects"), STAR],
        [Variable("name", 1, 3)],
        "cancel",
    ),
    ("verb after deep", "/v1/{name=**}:undelete", [L("v1"), DEEP], [Variable("name", 1, 2)], "undelete"),
    (
        "ours",
        "/api/v2/users/{user}/secrets/{name}",
        [L("api"), L("v2"), L("users"), STAR, L("secrets"), STAR],
        [Variable("user", 3, 4), Variable("name", 5, 6)],
        None,
    ),
    ("escaped literal", "/v1/a%20b", [L("v1"), L("a%20b")], [], None),
]


@pytest.mark.parametrize(("source", "segments", "variables", "verb"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_parse(source: str, segments: list[Segment], variables: list[Variable], verb: str | None) -> None:
    tpl = parse(source)
    got = (list(tpl.segments), list(tpl.variables), tpl.verb)
    assert got == (segments, variables, verb), f"parse({source!r}) = {got}; want {(segments, variables, verb)}"
    assert tpl.source == source


INVALID = [
    ("no leading slash", "v1/x"),
    ("empty", ""),
    ("unclosed brace", "/v1/{name"),
    ("stray close brace", "/v1/name}"),
    ("nested variables", "/v1/{a={b}}"),
    ("deep not last", "/v1/**/x"),
    ("deep var not last", "/v1/{name=**}/x"),
    ("bad ident", "/v1/{a-b}"),
    ("empty field path part", "/v1/{a..b}"),
    ("var inside a segment", "/v1/a{b}"),
    ("var with suffix", "/v1/{b}c"),
    ("empty verb", "/v1/x:"),
    ("field bound twice", "/v1/{a}/{a}"),
    ("empty segment", "/v1//x"),
    ("trailing slash", "/v1/x/"),
    ("query in template", "/v1/x?y"),
    ("bad escape", "/v1/a%zz"),
]


@pytest.mark.parametrize("source", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_parse_rejects(source: str) -> None:
    with pytest.raises(TemplateError):
        parse(source)
        pytest.fail(f"parse({source!r}) succeeded; want TemplateError")


def test_field_paths() -> None:
    assert parse("/v1/{a.b}/{c=x/*}").field_paths == ("a.b", "c")
