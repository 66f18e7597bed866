"""Parse a `google.api.http` path template into segments (grpc-gateway's internal/httprule/parse.go).

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`{var}` is shorthand for `{var=*}`. `**` may only be the last segment (before the verb), because the
matcher cannot know where a greedy run ends otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# RFC 3986 pchar without "/" and ":" (the verb separator); "%" starts an escape checked separately.
_LITERAL = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=@]|%[0-9A-Fa-f]{2})+\Z")


class TemplateError(ValueError):
    """A template that the google.api.http grammar rejects."""


class Kind(Enum):
    LITERAL = "literal"
    WILDCARD = "*"
    DEEP_WILDCARD = "**"


@dataclass(frozen=True, slots=True)
class Segment:
    kind: Kind
    literal: str = ""  # the literal text, only for Kind.LITERAL


@dataclass(frozen=True, slots=True)
class Variable:
    """A field path bound to the segments `start:end` of the template's segment list."""

    field_path: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str | None

    @property
    def field_paths(self) -> tuple[str, ...]:
        return tuple(v.field_path for v in self.variables)


def _split_verb(body: str) -> tuple[str, str | None]:
    """The verb is the last ':' outside braces that follows the last '/' outside braces."""
    depth = 0
    last_slash = last_colon = -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and ch == "/":
            last_slash = i
        elif depth == 0 and ch == ":":
            last_colon = i
    if last_colon > last_slash:
        verb = body[last_colon + 1 :]
        if not _LITERAL.match(verb):
            raise TemplateError(f"invalid verb {verb!r}")
        return body[:last_colon], verb
    return body, None


def _split_top(text: str) -> list[str]:
    """Split on '/' outside braces."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
            if depth > 1:
                raise TemplateError("nested variables are not allowed")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError("unbalanced '}'")
        elif ch == "/" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise TemplateError("unbalanced '{'")
    parts.append(text[start:])
    return parts


def _plain_segment(text: str) -> Segment:
    if text == "*":
        return Segment(Kind.WILDCARD)
    if text == "**":
        return Segment(Kind.DEEP_WILDCARD)
    if not _LITERAL.match(text):
        raise TemplateError(f"invalid literal segment {text!r}")
    return Segment(Kind.LITERAL, text)


def parse(source: str) -> Template:
    if not source.startswith("/"):
        raise TemplateError(f"template must start with '/': {source!r}")
    body, verb = _split_verb(source[1:])
    segments: list[Segment] = []
    variables: list[Variable] = []
    for part in _split_top(body):
        if part.startswith("{"):
            if not part.endswith("}"):
                raise TemplateError(f"variable must be a whole segment: {part!r}")
            inner = part[1:-1]
            field_path, _, sub = inner.partition("=")
            if not all(_IDENT.match(ident) for ident in field_path.split(".")):
                raise TemplateError(f"invalid field path {field_path!r}")
            if field_path in (v.field_path for v in variables):
                raise TemplateError(f"field {field_path!r} bound twice")
            sub_parts = sub.split("/") if sub else ["*"]
            start = len(segments)
            segments.extend(_plain_segment(p) for p in sub_parts)
            variables.append(Variable(field_path, start, len(segments)))
        elif "{" in part or "}" in part:
            raise TemplateError(f"variable must be a whole segment: {part!r}")
        else:
            segments.append(_plain_segment(part))
    for i, seg in enumerate(segments):
        if seg.kind is Kind.DEEP_WILDCARD and i != len(segments) - 1:
            raise TemplateError("'**' must be the last segment")
    return Template(source, tuple(segments), tuple(variables), verb)
