"""Build one RPC request message from an HTTP request, as the google.api.http spec binds it.

Path variables win over everything; with `body: "*"` the JSON object fills every other field (keys bound by
the path are ignored, so a `name` in a PATCH body cannot rename); with `body: "field"` the JSON fills that
field; fields bound by neither come from query parameters (`a.b=value`, repeated keys for lists). Unknown
query parameters are ignored, like unknown JSON keys.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from usersecrets.gateway.codec import CodecError, Codecs, MessageCodec, json_type


class ParameterError(ValueError):
    """A path or query value that does not fit its field."""


_TEXT_TO_BOOL = {"true": True, "false": False, "1": True, "0": False}
# Our request bodies are flat objects. Nesting past this is refused with its own detail (nesting deep enough
# to exhaust the parser's stack already fails there, as invalid JSON).
MAX_JSON_DEPTH = 32
TOO_DEEP = f"the JSON nesting is deeper than {MAX_JSON_DEPTH} levels"


def _deeper_than(value: dict[str, Any], limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]  # iterative: a deep value cannot exhaust the stack here either
    while stack:
        item, depth = stack.pop()
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                if depth == limit:
                    return True
                if child:
                    stack.append((child, depth + 1))
    return False


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; CodecError (detail says why, never quoting the body) otherwise."""
    if not raw.strip():
        raise CodecError("the request body is empty")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise CodecError("the request body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise CodecError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (ValueError, RecursionError) as exc:
        raise CodecError("invalid JSON") from exc
    if type(value) is not dict:
        raise CodecError(f"the request body must be a JSON object, not {json_type(value)}")
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise CodecError(TOO_DEEP)
    return value


def _field_at(descriptor: Descriptor, field_path: str) -> list[FieldDescriptor]:
    chain: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for name in field_path.split("."):
        assert current is not None, f"{field_path}: {chain[-1].name} is not a message"
        field = current.fields_by_name.get(name)
        assert field is not None, f"{descriptor.full_name} has no field {field_path}"
        chain.append(field)
        current = field.message_type
    return chain


def _from_text(field: FieldDescriptor, text: str, path: str) -> Any:
    """A path or query value (always text) as the field's Python value."""
    kind = field.type
    try:
        if kind == FieldDescriptor.TYPE_STRING:
            return text
        if kind == FieldDescriptor.TYPE_BOOL:
            return _TEXT_TO_BOOL[text]
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return float(text)
        if kind == FieldDescriptor.TYPE_BYTES:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if kind == FieldDescriptor.TYPE_ENUM:
            value = field.enum_type.values_by_name.get(text)
            return value.number if value is not None else int(text)
        if field.message_type is None:
            return int(text)
    except (KeyError, ValueError) as exc:
        raise ParameterError(f'parameter "{path}" has the wrong type') from exc
    raise ParameterError(f'parameter "{path}" cannot be set from text')


def _assign(message: Message, chain: list[FieldDescriptor], values: list[Any]) -> None:
    target = message
    for field in chain[:-1]:
        target = getattr(target, field.name)
    last = chain[-1]
    try:
        if last.is_repeated:
            getattr(target, last.name).extend(values)
        else:
            setattr(target, last.name, values[-1])
    except (ValueError, TypeError) as exc:  # out of range for the field's width
        raise ParameterError(f'parameter "{".".join(f.name for f in chain)}" is out of range') from exc


@dataclass(frozen=True, slots=True)
class Binding:
    """How one route fills its request message: compiled once per route at start."""

    codec: MessageCodec
    path_fields: tuple[tuple[str, list[FieldDescriptor]], ...]
    body: str  # "", "*", or a top-level field name
    body_codec: MessageCodec | None
    ignored_body_keys: frozenset[str]

    @classmethod
    def compile(cls, codecs: Codecs, descriptor: Descriptor, field_paths: Iterable[str], body: str) -> Binding:
        paths = tuple((p, _field_at(descriptor, p)) for p in field_paths)
        body_codec = None
        if body and body != "*":
            (field,) = _field_at(descriptor, body)
            assert field.message_type is not None and not field.is_repeated, f"body {body!r} must be a message"
            body_codec = codecs.get(field.message_type)
        top_level = frozenset(p for p, chain in paths if len(chain) == 1)
        return cls(codecs.get(descriptor), paths, body, body_codec, top_level)

    def build(
        self, raw_body: bytes | None, path_values: Mapping[str, str], query: Iterable[tuple[str, str]]
    ) -> Message:
        if self.body == "*":
            message = self.codec.decode(parse_json_object(raw_body or b""), ignore=self.ignored_body_keys)
        else:
            message = self.codec.message_class()
            if self.body_codec is not None:
                sub = self.body_codec.decode(parse_json_object(raw_body or b""))
                getattr(message, self.body).CopyFrom(sub)
            self._apply_query(message, query)
        for field_path, chain in self.path_fields:
            _assign(message, chain, [_from_text(chain[-1], path_values[field_path], field_path)])
        return message

    def _apply_query(self, message: Message, query: Iterable[tuple[str, str]]) -> None:
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            grouped.setdefault(key, []).append(value)
        if not grouped:
            return
        bound = {p for p, _ in self.path_fields}
        for key, texts in grouped.items():
            if key in bound or (self.body and key.split(".")[0] == self.body):
                continue
            chain = self._query_chain(key)
            if chain is None:
                continue
            _assign(message, chain, [_from_text(chain[-1], t, key) for t in texts])

    def _query_chain(self, key: str) -> list[FieldDescriptor] | None:
        chain: list[FieldDescriptor] = []
        current: Descriptor | None = self.codec.descriptor
        for name in key.split("."):
            field = current.fields_by_name.get(name) if current is not None else None
            if field is None:
                return None
            chain.append(field)
            current = field.message_type
        last = chain[-1]
        if last.message_type is not None or any(f.is_repeated for f in chain[:-1]):
            return None  # only scalar leaves (and lists of them) reach the query string
        return chain
