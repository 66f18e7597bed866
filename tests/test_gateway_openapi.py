"""The OpenAPI 3.1 document generated from the descriptors: the five operations and their shapes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest

from usersecrets.gateway.codec import Codecs
from usersecrets.gateway.openapi import document
from usersecrets.gateway.routes import build_routes
from usersecrets.v1 import usersecrets_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["UserSecretsService"]
REF = "#/components/schemas/"
SECRET_KEYS = ["id", "name", "description", "env_name", "file_path", "created_at", "updated_at"]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document(build_routes(SERVICE, Codecs()))


def test_top_level(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["security"] == [{"CoderSessionToken": []}]
    assert doc["components"]["securitySchemes"] == {
        "CoderSessionToken": {"type": "apiKey", "in": "header", "name": "Coder-Session-Token"}
    }
    assert {path: sorted(ops) for path, ops in doc["paths"].items()} == {
        "/api/v2/users/{user}/secrets": ["get", "post"],
        "/api/v2/users/{user}/secrets/{name}": ["delete", "get", "patch"],
    }


OPERATIONS = [
    ("post", "/api/v2/users/{user}/secrets", "CreateUserSecret", ["user"], "201", {"$ref": REF + "UserSecret"}),
    (
        "get",
        "/api/v2/users/{user}/secrets",
        "ListUserSecrets",
        ["user"],
        "200",
        {"type": "array", "items": {"$ref": REF + "UserSecret"}},
    ),
    (
        "get",
        "/api/v2/users/{user}/secrets/{name}",
        "GetUserSecret",
        ["user", "name"],
        "200",
        {"$ref": REF + "UserSecret"},
    ),
    (
        "patch",
        "/api/v2/users/{user}/secrets/{name}",
        "UpdateUserSecret",
        ["user", "name"],
        "200",
        {"$ref": REF + "UserSecret"},
    ),
    ("delete", "/api/v2/users/{user}/secrets/{name}", "DeleteUserSecret", ["user", "name"], "204", None),
]


@pytest.mark.parametrize(
    ("method", "path", "operation_id", "params", "status", "schema"), OPERATIONS, ids=[o[2] for o in OPERATIONS]
)
def test_operation(
    doc: dict[str, Any], method: str, path: str, operation_id: str, params: list[str], status: str, schema: Any
) -> None:
    op = doc["paths"][path][method]
    assert op["operationId"] == operation_id
    assert [(p["name"], p["in"], p["required"]) for p in op["parameters"]] == [(n, "path", True) for n in params]
    success = op["responses"][status]
    if schema is None:
        assert "content" not in success
    else:
        assert success["content"] == {"application/json": {"schema": schema}}
    errors = {code for code in op["responses"] if code != status}
    assert {"400", "401", "403", "404", "409", "429", "500", "503", "504", "default"} <= errors
    assert ("413" in errors) == (method in ("post", "patch"))
    for code in errors:
        assert op["responses"][code]["content"] == {"application/json": {"schema": {"$ref": REF + "Error"}}}
    assert op["responses"]["429"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/RetryAfter"}


def test_user_secret_schema_requires_every_key(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["UserSecret"]
    assert schema["required"] == SECRET_KEYS
    assert schema["properties"]["created_at"] == {"type": "string", "format": "date-time"}
    assert "value" not in schema["properties"]


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("CreateUserSecretBody", ["name", "value", "description", "env_name", "file_path"]),
        ("UpdateUserSecretBody", ["value", "description", "env_name", "file_path"]),
    ],
)
def test_request_bodies_leave_out_path_fields(doc: dict[str, Any], name: str, keys: list[str]) -> None:
    schema = doc["components"]["schemas"][name]
    assert list(schema["properties"]) == keys and "required" not in schema
    assert all(p == {"type": "string"} for p in schema["properties"].values())


def test_error_schema(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["message"] and set(error["properties"]) == {"message", "detail", "validations"}


def test_schemas_are_valid_json_schema_and_accept_what_the_gateway_writes(doc: dict[str, Any]) -> None:
    # The component schemas as one JSON Schema document: $refs rewritten to point at $defs.
    rewritten = json.loads(json.dumps(doc).replace("#/components/schemas/", "#/$defs/"))
    resolved = {"$defs": rewritten["components"]["schemas"]}
    secret = {"$ref": "#/$defs/UserSecret", **resolved}
    good = dict.fromkeys(SECRET_KEYS, "x") | {"created_at": "2026-01-02T03:04:05.123456Z"}
    assert jsonschema_rs.validator_for(secret).is_valid(good)
    assert not jsonschema_rs.validator_for(secret).is_valid({k: v for k, v in good.items() if k != "id"})
    error = {"$ref": "#/$defs/Error", **resolved}
    assert jsonschema_rs.validator_for(error).is_valid({"message": "m", "validations": [{"field": "f", "detail": "d"}]})
    assert not jsonschema_rs.validator_for(error).is_valid({"detail": "no message"})


def test_document_is_stable(doc: dict[str, Any]) -> None:
    assert document(build_routes(SERVICE, Codecs())) == doc
