"""Match a raw URL path against a compiled template (grpc-gateway's runtime/pattern.go).

Matching works on the raw (still percent-encoded) path, so an encoded '/' inside a name never splits a
segment. Values are percent-decoded exactly once, as the google.api.http spec says: a single-segment
variable decodes everything; a multi-segment variable decodes everything except `%2F`, which stays as is
so the value can still be split on '/' unambiguously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from usersecrets.gateway.httprule import Kind, Template

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_SLASH = re.compile(r"(%2[Ff])")


class PathEncodingError(ValueError):
    """A malformed percent escape, or bytes that are not UTF-8 once decoded."""


def decode_segment(raw: str) -> str:
    if "%" not in raw:
        return raw
    if _BAD_ESCAPE.search(raw):
        raise PathEncodingError("malformed percent escape in the path")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PathEncodingError("the path is not UTF-8 once percent-decoded") from exc


def decode_keeping_slashes(raw: str) -> str:
    # Splitting keeps the %2F separators (odd indexes) verbatim, decoding only the text between them.
    parts = _ENCODED_SLASH.split(raw)
    return "".join(p if i % 2 else decode_segment(p) for i, p in enumerate(parts))


@dataclass(frozen=True, slots=True)
class Pattern:
    template: Template

    @classmethod
    def compile(cls, template: Template) -> Pattern:
        return cls(template)

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Field path -> decoded value, or None when the path does not fit.

        Raises PathEncodingError when the path fits but a bound value cannot be decoded.
        """
        tpl = self.template
        if not raw_path.startswith("/"):
            return None
        path = raw_path[1:]
        if tpl.verb is not None:
            suffix = ":" + tpl.verb
            if not path.endswith(suffix):
                return None
            path = path[: -len(suffix)]
        components = path.split("/")
        segments = tpl.segments
        deep = bool(segments) and segments[-1].kind is Kind.DEEP_WILDCARD
        if deep:
            if len(components) < len(segments) - 1:
                return None
        elif len(components) != len(segments):
            return None
        for seg, comp in zip(segments, components, strict=False):
            if seg.kind is Kind.LITERAL:
                if comp != seg.literal and _safe_decode(comp) != _safe_decode(seg.literal):
                    return None
            elif seg.kind is Kind.WILDCARD and not comp:
                return None
        values: dict[str, str] = {}
        for var in tpl.variables:
            end = len(components) if deep and var.end == len(segments) else var.end
            raw = "/".join(components[var.start : end])
            single = var.end - var.start == 1 and segments[var.start].kind is not Kind.DEEP_WILDCARD
            values[var.field_path] = decode_segment(raw) if single else decode_keeping_slashes(raw)
        return values


def _safe_decode(raw: str) -> str | None:
    try:
        return decode_segment(raw)
    except PathEncodingError:
        return None
