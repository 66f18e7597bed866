"""CONTRACT.md section 2 through REST: real HTTP -> gateway -> real gRPC server -> real Redis."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.gateway_stack import GatewayStack, Reply, call, gateway_in_front_of
from tests.support.stack import ServerStack
from usersecrets.common.jsonlog import JsonFormatter

SECRETS = "/api/v2/users/me/secrets"
SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
NOT_FOUND = "Resource not found or you do not have access to this resource"
KEYS = ["id", "name", "description", "env_name", "file_path", "created_at", "updated_at"]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


async def signed_in(gw: GatewayStack, username: str = "alice") -> str:
    _, token = await gw.user(username)
    return token


async def listed(gw: GatewayStack, token: str) -> list[dict[str, Any]]:
    reply = await call(gw.http, "GET", SECRETS, token=token)
    assert reply.status == 200, reply
    return reply.json


def assert_secret(body: dict[str, Any], **want: str) -> None:
    assert list(body) == KEYS, body
    assert UUID.match(body["id"]) and TIMESTAMP.match(body["created_at"]) and TIMESTAMP.match(body["updated_at"])
    assert {k: body[k] for k in want} == want


def assert_error(reply: Reply, status: int, message: str, **rest: Any) -> None:
    assert (reply.status, reply.json) == (status, {"message": message, **rest}), reply


@pytest.fixture
async def gateway(server_stack: ServerStack) -> AsyncIterator[GatewayStack]:
    async with gateway_in_front_of(server_stack) as stack:
        yield stack


# ---- the five endpoints -------------------------------------------------------------------------------


async def test_create_get_list_delete(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    body = {"name": "gh", "value": "ghp-123", "description": "d", "env_name": "GH_TOKEN", "file_path": "~/.gh"}
    created = await call(gateway.http, "POST", SECRETS, token=token, body=body)
    assert created.status == 201
    assert_secret(created.json, name="gh", description="d", env_name="GH_TOKEN", file_path="~/.gh")
    assert created.json["created_at"] == created.json["updated_at"]

    got = await call(gateway.http, "GET", f"{SECRETS}/gh", token=token)
    assert (got.status, got.json) == (200, created.json)
    assert await listed(gateway, token) == [created.json]

    deleted = await call(gateway.http, "DELETE", f"{SECRETS}/gh", token=token)
    assert (deleted.status, deleted.raw, deleted.headers.get("Content-Type")) == (204, b"", None)
    assert await listed(gateway, token) == []
    assert_error(await call(gateway.http, "GET", f"{SECRETS}/gh", token=token), 404, NOT_FOUND)
    assert_error(await call(gateway.http, "DELETE", f"{SECRETS}/gh", token=token), 404, NOT_FOUND)


async def test_optional_fields_default_to_empty_and_every_key_is_present(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    created = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
    assert created.status == 201
    assert_secret(created.json, name="k", description="", env_name="", file_path="")


async def test_list_is_empty_array_then_sorted_by_name_bytes(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    assert (await call(gateway.http, "GET", SECRETS, token=token)).raw == b"[]"
    names = ["b", "B", "a b", "_x", "é", "Z", "a", "10", "9"]
    for name in names:
        assert (await call(gateway.http, "POST", SECRETS, token=token, body={"name": name, "value": "v"})).status == 201
    got = [s["name"] for s in await listed(gateway, token)]
    assert got == sorted(names, key=lambda n: n.encode())


async def test_user_param_me_uuid_or_username(gateway: GatewayStack) -> None:
    user, token = await gateway.user("bob")
    created = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
    for who in ("me", user.id, "bob"):
        reply = await call(gateway.http, "GET", f"/api/v2/users/{who}/secrets/k", token=token)
        assert (reply.status, reply.json) == (200, created.json), who


NAMES = [
    ("space", "my key", "my%20key"),
    ("percent", "100%", "100%25"),
    ("percent then hex", "a%20b", "a%2520b"),
    ("colon", "a:b", "a:b"),
    ("plus", "a+b", "a+b"),
    ("unicode", "clé", "cl%C3%A9"),
]


@pytest.mark.parametrize(("name", "encoded"), [c[1:] for c in NAMES], ids=[c[0] for c in NAMES])
async def test_name_is_percent_decoded_once(gateway: GatewayStack, name: str, encoded: str) -> None:
    token = await signed_in(gateway)
    created = await call(gateway.http, "POST", SECRETS, token=token, body={"name": name, "value": "v"})
    assert created.status == 201
    for method in ("GET", "PATCH", "DELETE"):
        body = {"description": "x"} if method == "PATCH" else None
        reply = await call(gateway.http, method, f"{SECRETS}/{encoded}", token=token, body=body)
        assert reply.status in (200, 204) and (method != "GET" or reply.json["name"] == name), (method, reply)
    assert await listed(gateway, token) == []


async def test_value_is_never_returned(gateway: GatewayStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = await signed_in(gateway)
    value, other = "VALUE-never-shown-3141", "VALUE-never-shown-2718"
    replies = [
        await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": value}),
        await call(gateway.http, "GET", f"{SECRETS}/k", token=token),
        await call(gateway.http, "GET", SECRETS, token=token),
        await call(gateway.http, "PATCH", f"{SECRETS}/k", token=token, body={"value": other}),
        await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": other}),
        await call(gateway.http, "POST", SECRETS, token=token, body={"name": "", "value": ["x", value]}),
    ]
    assert [r.status for r in replies] == [201, 200, 200, 200, 409, 400]
    metrics = (await call(gateway.http, "GET", "/metrics")).raw
    for text in [*(r.raw for r in replies), str([dict(r.headers) for r in replies]).encode(), metrics]:
        assert value.encode() not in text and other.encode() not in text and token.encode() not in text
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert '"route": "/api/v2/users/{user}/secrets"' in logged  # the access log was captured
    assert value not in logged and other not in logged and token not in logged


# ---- PATCH ------------------------------------------------------------------------------------------------


async def _patchable(gw: GatewayStack) -> tuple[str, dict[str, Any]]:
    token = await signed_in(gw)
    body = {"name": "k", "value": "v1", "description": "d", "env_name": "E", "file_path": "/f"}
    created = await call(gw.http, "POST", SECRETS, token=token, body=body)
    assert created.status == 201
    return token, created.json


PATCHES = [
    ("absent keys leave fields alone", {"description": "new"}, {"description": "new"}),
    (
        "empty strings clear",
        {"description": "", "env_name": "", "file_path": ""},
        {"description": "", "env_name": "", "file_path": ""},
    ),
    ("value alone", {"value": "v2"}, {}),
    ("empty value", {"value": ""}, {}),
    ("name key is ignored", {"name": "renamed", "env_name": "F"}, {"env_name": "F"}),
    ("unknown keys are ignored", {"nope": 1, "file_path": "~/g"}, {"file_path": "~/g"}),
]


@pytest.mark.parametrize(("body", "changed"), [c[1:] for c in PATCHES], ids=[c[0] for c in PATCHES])
async def test_patch(gateway: GatewayStack, body: dict[str, Any], changed: dict[str, str]) -> None:
    token, before = await _patchable(gateway)
    await asyncio.sleep(0.002)  # updated_at has microseconds; make "moved" observable
    reply = await call(gateway.http, "PATCH", f"{SECRETS}/k", token=token, body=body)
    assert reply.status == 200, reply
    after = reply.json
    assert {**after, "updated_at": ""} == {**before, **changed, "updated_at": ""}
    assert after["updated_at"] > before["updated_at"] and after["created_at"] == before["created_at"]
    assert await listed(gateway, token) == [after]


@pytest.mark.parametrize(
    "body", [{}, {"name": "x"}, {"nope": "x"}, {"value": None}], ids=["empty", "name only", "unknown only", "null"]
)
async def test_patch_with_no_field(gateway: GatewayStack, body: dict[str, Any]) -> None:
    token, before = await _patchable(gateway)
    reply = await call(gateway.http, "PATCH", f"{SECRETS}/k", token=token, body=body)
    assert_error(reply, 400, "At least one field must be provided.")
    assert await listed(gateway, token) == [before]


async def test_patch_missing_secret(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    assert_error(await call(gateway.http, "PATCH", f"{SECRETS}/nope", token=token, body={"value": "x"}), 404, NOT_FOUND)


# ---- validation ---------------------------------------------------------------------------------------------

VALID = {"name": "k", "value": "v"}
RULES = [
    ("name null is missing", {"name": None}, "name", "required"),
    ("name blank", {"name": "   "}, "name", "required"),
    ("name leading space", {"name": " k"}, "name", "whitespace"),
    ("name trailing tab", {"name": "k\t"}, "name", "whitespace"),
    ("name slash", {"name": "a/b"}, "name", "must not contain"),
    ("name question", {"name": "a?b"}, "name", "must not contain"),
    ("name hash", {"name": "a#b"}, "name", "must not contain"),
    ("name 257 bytes", {"name": "n" * 257}, "name", "must not exceed"),
    ("name 129 two-byte chars", {"name": "é" * 129}, "name", "must not exceed"),
    ("value missing", {"name": "k", "value": ""}, "value", "required"),
    ("value nul", {"value": "a\x00b"}, "value", "null bytes"),
    ("value 24577 bytes", {"value": "v" * 24577}, "value", "must not exceed"),
    ("env digit first", {"env_name": "1ABC"}, "env_name", "must start with a letter or underscore"),
    ("env dash", {"env_name": "A-B"}, "env_name", "must start with a letter or underscore"),
    ("env reserved", {"env_name": "PATH"}, "env_name", "reserved"),
    ("env reserved lower", {"env_name": "home"}, "env_name", "reserved"),
    ("env CODER", {"env_name": "CODER"}, "env_name", "CODER_"),
    ("env CODER_ prefix", {"env_name": "coder_x"}, "env_name", "CODER_"),
    ("env GIT_", {"env_name": "GIT_DIR"}, "env_name", "reserved"),
    ("env LD_", {"env_name": "LD_PRELOAD"}, "env_name", "reserved"),
    ("env 257 bytes", {"env_name": "E" * 257}, "env_name", "must not exceed"),
    ("file relative", {"file_path": "rel/x"}, "file_path", "must start with ~/ or /"),
    ("file tilde only", {"file_path": "~x"}, "file_path", "must start with ~/ or /"),
    ("file nul", {"file_path": "/a\x00"}, "file_path", "null bytes"),
    ("file 4097 bytes", {"file_path": "/" + "f" * 4096}, "file_path", "must not exceed"),
    ("description 4097 bytes", {"description": "d" * 4097}, "description", "must not exceed"),
]


@pytest.mark.parametrize(("patch", "field", "text"), [c[1:] for c in RULES], ids=[c[0] for c in RULES])
async def test_create_validation(gateway: GatewayStack, patch: dict[str, str], field: str, text: str) -> None:
    token = await signed_in(gateway)
    body = {**VALID, **patch}
    reply = await call(gateway.http, "POST", SECRETS, token=token, body=body)
    assert (reply.status, reply.json["message"]) == (400, "Validation failed."), reply
    assert [v["field"] for v in reply.json["validations"]] == [field], reply.json
    assert text in reply.json["validations"][0]["detail"], reply.json
    assert set(reply.json) <= {"message", "detail", "validations"}
    assert await listed(gateway, token) == []


VALID_EDGES = [
    ("name 256 bytes", {"name": "n" * 256}),
    ("value 24576 bytes", {"value": "v" * 24576}),
    ("env underscore", {"env_name": "_A1"}),
    ("file absolute", {"file_path": "/etc/x"}),
    ("description 4096 bytes", {"description": "d" * 4096}),
]


@pytest.mark.parametrize("patch", [c[1] for c in VALID_EDGES], ids=[c[0] for c in VALID_EDGES])
async def test_create_validation_edges_pass(gateway: GatewayStack, patch: dict[str, str]) -> None:
    token = await signed_in(gateway)
    reply = await call(gateway.http, "POST", SECRETS, token=token, body={**VALID, **patch})
    assert reply.status == 201, reply
    assert await listed(gateway, token) == [reply.json]


async def test_all_failures_are_reported_together(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    body = {"name": "a/b", "value": "", "env_name": "PATH", "file_path": "x", "description": "d" * 5000}
    reply = await call(gateway.http, "POST", SECRETS, token=token, body=body)
    assert reply.status == 400 and reply.json["message"] == "Validation failed."
    assert sorted(v["field"] for v in reply.json["validations"]) == [
        "description",
        "env_name",
        "file_path",
        "name",
        "value",
    ]


async def test_patch_validation(gateway: GatewayStack) -> None:
    token, before = await _patchable(gateway)
    body = {"value": "a\x00", "env_name": "CODER_X", "file_path": "rel"}
    reply = await call(gateway.http, "PATCH", f"{SECRETS}/k", token=token, body=body)
    assert reply.status == 400 and reply.json["message"] == "Validation failed."
    assert sorted(v["field"] for v in reply.json["validations"]) == ["env_name", "file_path", "value"]
    assert await listed(gateway, token) == [before]


CONFLICTS = [
    ("name", {"name": "k", "value": "v"}),
    ("env_name", {"name": "k2", "value": "v", "env_name": "E"}),
    ("file_path", {"name": "k2", "value": "v", "file_path": "/f"}),
]


@pytest.mark.parametrize(("field", "body"), CONFLICTS, ids=[c[0] for c in CONFLICTS])
async def test_conflict_is_409(gateway: GatewayStack, field: str, body: dict[str, str]) -> None:
    token, before = await _patchable(gateway)
    reply = await call(gateway.http, "POST", SECRETS, token=token, body=body)
    assert_error(reply, 409, "Validation failed.", validations=[{"field": field, "detail": f"{field} already in use"}])
    assert await listed(gateway, token) == [before]


async def test_conflict_on_patch_and_case_sensitivity(gateway: GatewayStack) -> None:
    token, _ = await _patchable(gateway)
    other = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "K", "value": "v", "env_name": "e"})
    assert other.status == 201  # names and env names are case-sensitive for uniqueness
    reply = await call(gateway.http, "PATCH", f"{SECRETS}/K", token=token, body={"file_path": "/f"})
    assert_error(
        reply, 409, "Validation failed.", validations=[{"field": "file_path", "detail": "file_path already in use"}]
    )


# ---- per-user limits -----------------------------------------------------------------------------------------


async def test_limit_count(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    replies = await asyncio.gather(
        *(call(gateway.http, "POST", SECRETS, token=token, body={"name": f"s{i:02d}", "value": "v"}) for i in range(50))
    )
    assert {r.status for r in replies} == {201}
    reply = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "one-more", "value": "v"})
    assert_error(reply, 400, "User secrets limit reached.", detail="A user may have at most 50 secrets.")
    assert len(await listed(gateway, token)) == 50


async def test_limit_total_bytes(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    for i in range(8):
        assert (
            await call(gateway.http, "POST", SECRETS, token=token, body={"name": f"b{i}", "value": "v" * 24576})
        ).status == 201
    reply = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "b8", "value": "v" * 8193})
    assert reply.status == 400 and reply.json["message"] == "User secrets total value size limit reached.", reply
    assert "204800" in reply.json["detail"]
    # An update is measured without the row it replaces.
    assert (await call(gateway.http, "PATCH", f"{SECRETS}/b0", token=token, body={"value": "w" * 24576})).status == 200
    assert len(await listed(gateway, token)) == 8


async def test_limit_env_bytes(gateway: GatewayStack) -> None:
    token = await signed_in(gateway)
    body = {"name": "a", "value": "v" * 24576, "env_name": "A"}
    assert (await call(gateway.http, "POST", SECRETS, token=token, body=body)).status == 201
    reply = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "b", "value": "v", "env_name": "B"})
    assert reply.status == 400 and reply.json["message"] == "User secrets environment value size limit reached."
    assert "24576" in reply.json["detail"]
    # Without an env_name the same value fits.
    assert (await call(gateway.http, "POST", SECRETS, token=token, body={"name": "b", "value": "v"})).status == 201
