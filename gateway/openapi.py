"""The OpenAPI 3.1 document of the REST surface, generated at start from the same routes and descriptors
that the gateway serves, so the two cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from usersecrets.gateway.httprule import Template
from usersecrets.gateway.routes import RpcRoute

PATH = "/api/v2/openapi.json"
TITLE = "usersecrets REST API"
VERSION = "2.0.0"
SECURITY_SCHEME = "CoderSessionToken"

_REF = "#/components/schemas/"
_INTS = {
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_SINT32: "int32",
    FieldDescriptor.TYPE_SFIXED32: "int32",
    FieldDescriptor.TYPE_UINT32: "int64",
    FieldDescriptor.TYPE_FIXED32: "int64",
}
_INT64S = {
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_SINT64: "int64",
    FieldDescriptor.TYPE_SFIXED64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_FIXED64: "uint64",
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    timestamp_pb2.Timestamp.DESCRIPTOR.full_name: {"type": "string", "format": "date-time"},
    duration_pb2.Duration.DESCRIPTOR.full_name: {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    empty_pb2.Empty.DESCRIPTOR.full_name: {"type": "object"},
}
# Status codes an RPC route can answer besides its success, per the contract's error table.
_ERRORS = {
    "400": "Bad request: validation failed, a limit was reached, or the body is not valid JSON.",
    "401": "Not signed in: no, malformed, unknown or expired session token.",
    "403": "Forbidden: the path names another user.",
    "404": "Not found.",
    "409": "Conflict: the name, env_name or file_path is already used by another secret.",
    "429": "Too many requests.",
    "500": "Internal error.",
    "503": "The secrets service or its store is unavailable.",
    "504": "The request deadline passed.",
}
_BODY_TOO_LARGE = "The request body is larger than the gateway accepts."
_WORDS = re.compile(r"[A-Z][a-z0-9]*")


class _Schemas:
    """Component schemas by name, filled on demand while operations are written."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {
            "ValidationError": {
                "type": "object",
                "required": ["field", "detail"],
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
            },
            "Error": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "detail": {"type": "string"},
                    "validations": {"type": "array", "items": {"$ref": _REF + "ValidationError"}},
                },
            },
        }

    def ref(self, descriptor: Descriptor) -> dict[str, Any]:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.name
        if name not in self.components:
            self.components[name] = {}  # placeholder first: a recursive message refers to itself
            self.components[name] = self.message(descriptor, required=True)
        return {"$ref": _REF + name}

    def message(self, descriptor: Descriptor, *, required: bool, skip: Iterable[str] = ()) -> dict[str, Any]:
        """`required`: a response, where the gateway always writes every key."""
        skipped = set(skip)
        props = {f.name: self.field(f) for f in descriptor.fields if f.name not in skipped}
        schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            schema["required"] = list(props)
        return schema

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = self.single(field.message_type.fields_by_name["value"])
            return {"type": "object", "additionalProperties": value}
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.type
        if field.message_type is not None:
            return self.ref(field.message_type)
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in _INTS:
            return {"type": "integer", "format": _INTS[kind]}
        if kind in _INT64S:
            # proto3 JSON writes 64-bit integers as strings (a double cannot hold them exactly).
            return {"type": "string", "format": _INT64S[kind], "pattern": r"^-?\d+$"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if kind == FieldDescriptor.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        raise AssertionError(f"unsupported field type {kind} for {field.full_name}")


def openapi_path(template: Template) -> str:
    """`/v1/{name=shelves/*}:publish` -> `/v1/{name}:publish`: OpenAPI has no sub-patterns."""
    path = re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", template.source)
    return path


def _summary(method_name: str) -> str:
    words = _WORDS.findall(method_name)
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else method_name


def _query_parameters(route: RpcRoute, schemas: _Schemas) -> list[dict[str, Any]]:
    if route.binding.body == "*":
        return []
    bound = {p.split(".")[0] for p in route.template.field_paths} | {route.binding.body}
    params = []
    for field in route.method.input_type.fields:
        if field.name in bound or field.message_type is not None:
            continue  # nested query fields are legal but none of our messages need them documented
        params.append({"name": field.name, "in": "query", "required": False, "schema": schemas.field(field)})
    return params


def _operation(route: RpcRoute, schemas: _Schemas, operation_id: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": var, "in": "path", "required": True, "schema": {"type": "string"}}
        for var in route.template.field_paths
    ]
    params += _query_parameters(route, schemas)
    request_id = {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": _summary(route.method.name),
        "tags": [route.method.containing_service.name],
        "parameters": params,
    }
    input_type = route.method.input_type
    if route.binding.body:
        if route.binding.body == "*":
            name = f"{route.method.name}Body"
            skip = route.binding.ignored_body_keys
            schemas.components[name] = schemas.message(input_type, required=False, skip=skip)
            body_schema = {"$ref": _REF + name}
        else:
            body_schema = schemas.field(input_type.fields_by_name[route.binding.body])
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
    output = route.method.output_type
    status = str(route.success_status)
    if route.success_status == 204:
        success: dict[str, Any] = {"description": "No content.", "headers": request_id}
    else:
        if route.response_body:
            schema = schemas.field(output.fields_by_name[route.response_body])
        else:
            schema = schemas.ref(output)
        success = {
            "description": "OK.",
            "headers": request_id,
            "content": {"application/json": {"schema": schema}},
        }
    error = {"application/json": {"schema": {"$ref": _REF + "Error"}}}
    responses: dict[str, Any] = {status: success}
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "headers": request_id, "content": error}
    if route.binding.body:
        responses["413"] = {"description": _BODY_TOO_LARGE, "headers": request_id, "content": error}
    responses["429"]["headers"] = {**request_id, "Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    responses["default"] = {"description": "Any other error.", "headers": request_id, "content": error}
    op["responses"] = dict(sorted(responses.items()))
    return op


def document(routes: Iterable[RpcRoute]) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for route in routes:
        name = route.method.name
        seen[name] = seen.get(name, 0) + 1
        operation_id = name if seen[name] == 1 else f"{name}{seen[name]}"
        paths.setdefault(openapi_path(route.template), {})[route.http_method.lower()] = _operation(
            route, schemas, operation_id
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "headers": {
                "RequestId": {
                    "description": "The request's id: the caller's X-Request-Id, or a new one.",
                    "schema": {"type": "string"},
                },
                "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}},
            },
            "securitySchemes": {SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": "Coder-Session-Token"}},
        },
        "security": [{SECURITY_SCHEME: []}],
    }
