"""The curl examples of the seed API description (docs/seed/user-secrets-api.txt), run with real curl.

The commands are copied below as written (method, path, headers); only the placeholders are filled in: the
host, `{user}`, `{name}` and `API_KEY`. The seed's curl lines carry no body, so POST and PATCH send the
seed's "Body parameter" examples, with `file_path` made absolute: the seed's `"string"` breaks the
contract's file_path rule, which the last test shows.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_stack import GatewayStack, gateway_in_front_of
from tests.support.stack import ServerStack

# A copy of ../shared/seed/user-secrets-api.txt kept in the repository, so this check always runs.
SEED = Path(__file__).resolve().parents[1] / "docs" / "seed" / "user-secrets-api.txt"
CURL_LIST = """curl -X GET http://coder-server:8080/api/v2/users/{user}/secrets \\
-H 'Accept: application/json' \\
-H 'Coder-Session-Token: API_KEY'"""
CURL_CREATE = """curl -X POST http://coder-server:8080/api/v2/users/{user}/secrets \\
-H 'Content-Type: application/json' \\
-H 'Accept: application/json' \\
-H 'Coder-Session-Token: API_KEY'"""
CURL_GET = """curl -X GET http://coder-server:8080/api/v2/users/{user}/secrets/{name} \\
-H 'Accept: application/json' \\
-H 'Coder-Session-Token: API_KEY'"""
CURL_DELETE = """curl -X DELETE http://coder-server:8080/api/v2/users/{user}/secrets/{name} \\
-H 'Coder-Session-Token: API_KEY'"""
CURL_UPDATE = """curl -X PATCH http://coder-server:8080/api/v2/users/{user}/secrets/{name} \\
-H 'Content-Type: application/json' \\
-H 'Accept: application/json' \\
-H 'Coder-Session-Token: API_KEY'"""
CREATE_BODY = {
    "description": "string",
    "env_name": "string",
    "file_path": "string",
    "name": "string",
    "value": "string",
}
UPDATE_BODY = {"description": "string", "env_name": "string", "file_path": "string", "value": "string"}
SECRET_KEYS = {"created_at", "description", "env_name", "file_path", "id", "name", "updated_at"}
DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")


@pytest.fixture
async def gateway(server_stack: ServerStack) -> AsyncIterator[GatewayStack]:
    async with gateway_in_front_of(server_stack) as stack:
        yield stack


async def curl(
    command: str, gw: GatewayStack, token: str, user: str, name: str = "", body: Any = None
) -> tuple[int, str, bytes]:
    """Run one seed command with its placeholders filled: (status, content type, body)."""
    filled = (
        command.replace("http://coder-server:8080", gw.url)
        .replace("{user}", user)
        .replace("{name}", name)
        .replace("API_KEY", token)
    )
    args = shlex.split(filled.replace("\\\n", " "))
    args[1:1] = ["-s", "-S", "-o", "-", "-w", "\n%{http_code} %{content_type}"]
    if body is not None:
        args += ["--data-binary", "@-"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate(json.dumps(body).encode() if body is not None else None)
    assert proc.returncode == 0, err
    payload, _, trailer = out.rpartition(b"\n")
    status, _, content_type = trailer.decode().partition(" ")
    return int(status), content_type, payload


def assert_user_secret(secret: dict[str, Any]) -> None:
    assert set(secret) == SECRET_KEYS, secret
    assert DATE_TIME.match(secret["created_at"]) and DATE_TIME.match(secret["updated_at"])


def test_commands_are_the_seeds() -> None:
    text = SEED.read_text()
    for command in (CURL_LIST, CURL_CREATE, CURL_GET, CURL_DELETE, CURL_UPDATE):
        assert command in text, command


@pytest.mark.parametrize("who", ["me", "username"])
async def test_seed_examples(gateway: GatewayStack, who: str) -> None:
    user, token = await gateway.user("alice")
    user_param = "me" if who == "me" else user.username
    body = {**CREATE_BODY, "file_path": "/string"}

    status, content_type, raw = await curl(CURL_LIST, gateway, token, user_param)
    assert (status, content_type, json.loads(raw)) == (200, "application/json", [])

    status, content_type, raw = await curl(CURL_CREATE, gateway, token, user_param, body=body)
    assert (status, content_type) == (201, "application/json"), raw
    created = json.loads(raw)
    assert_user_secret(created)
    assert {k: created[k] for k in ("name", "description", "env_name", "file_path")} == {
        "name": "string",
        "description": "string",
        "env_name": "string",
        "file_path": "/string",
    }

    status, content_type, raw = await curl(CURL_LIST, gateway, token, user_param)
    assert (status, content_type, json.loads(raw)) == (200, "application/json", [created])

    status, content_type, raw = await curl(CURL_GET, gateway, token, user_param, "string")
    assert (status, content_type, json.loads(raw)) == (200, "application/json", created)

    update = {**UPDATE_BODY, "description": "changed", "file_path": "~/string"}
    status, content_type, raw = await curl(CURL_UPDATE, gateway, token, user_param, "string", body=update)
    assert (status, content_type) == (200, "application/json"), raw
    updated = json.loads(raw)
    assert_user_secret(updated)
    assert (updated["description"], updated["file_path"], updated["id"]) == ("changed", "~/string", created["id"])

    status, content_type, raw = await curl(CURL_DELETE, gateway, token, user_param, "string")
    assert (status, content_type, raw) == (204, "", b"")

    status, _, raw = await curl(CURL_GET, gateway, token, user_param, "string")
    assert (status, json.loads(raw)) == (
        404,
        {"message": "Resource not found or you do not have access to this resource"},
    )


async def test_seed_example_bodies_as_written(gateway: GatewayStack) -> None:
    _, token = await gateway.user("alice")
    status, _, raw = await curl(CURL_CREATE, gateway, token, "me", body=CREATE_BODY)
    assert (status, json.loads(raw)) == (
        400,
        {
            "message": "Validation failed.",
            "validations": [{"field": "file_path", "detail": "file_path must start with ~/ or /"}],
        },
    )
    status, _, raw = await curl(CURL_CREATE, gateway, token, "me")  # the curl line alone: no body at all
    assert (status, json.loads(raw)) == (
        400,
        {"message": "Request body must be valid JSON.", "detail": "the request body is empty"},
    )
