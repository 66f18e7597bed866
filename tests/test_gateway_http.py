"""The gateway's own HTTP behaviour over real HTTP: routing errors, bodies, caps, headers, ops endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.stack import ServerStack
from usersecrets.gateway import openapi
from usersecrets.gateway.app import OPENAPI

SECRETS = "/api/v2/users/me/secrets"
INVALID_JSON = "Request body must be valid JSON."
CAP = 4096


@pytest.fixture
async def gateway(server_stack: ServerStack) -> AsyncIterator[GatewayStack]:
    async with gateway_in_front_of(server_stack, max_body_bytes=CAP) as stack:
        yield stack


async def token_of(gw: GatewayStack) -> str:
    return (await gw.user("alice"))[1]


UNKNOWN_PATHS = [
    ("root", "/"),
    ("api root", "/api/v2"),
    ("user without collection", "/api/v2/users/me"),
    ("trailing slash", "/api/v2/users/me/secrets/"),
    ("name with raw slash", "/api/v2/users/me/secrets/a/b"),
    ("other version", "/api/v1/users/me/secrets"),
    ("case differs", "/API/v2/users/me/secrets"),
    ("empty user", "/api/v2/users//secrets"),
    ("nothing like it", "/wp-login.php"),
]


@pytest.mark.parametrize("path", [c[1] for c in UNKNOWN_PATHS], ids=[c[0] for c in UNKNOWN_PATHS])
async def test_unknown_path_is_json_404(gateway: GatewayStack, path: str) -> None:
    reply = await call(gateway.http, "GET", path, headers={"Accept": "text/html"})
    assert (reply.status, reply.json) == (404, {"message": "Route not found."}), path


WRONG_METHODS = [
    ("put on collection", "PUT", SECRETS, "POST, GET"),
    ("delete on collection", "DELETE", SECRETS, "POST, GET"),
    ("post on item", "POST", f"{SECRETS}/k", "GET, PATCH, DELETE"),
    ("put on item", "PUT", f"{SECRETS}/k", "GET, PATCH, DELETE"),
    ("options on item", "OPTIONS", f"{SECRETS}/k", "GET, PATCH, DELETE"),
    ("post healthz", "POST", "/healthz", "GET"),
    ("delete openapi", "DELETE", openapi.PATH, "GET"),
]


@pytest.mark.parametrize(("method", "path", "allow"), [c[1:] for c in WRONG_METHODS], ids=[c[0] for c in WRONG_METHODS])
async def test_wrong_method_is_json_405_with_allow(gateway: GatewayStack, method: str, path: str, allow: str) -> None:
    reply = await call(gateway.http, method, path, token=await token_of(gateway))
    assert (reply.status, reply.json, reply.headers["Allow"]) == (405, {"message": "Method not allowed."}, allow)


BAD_BODIES = [
    ("array", b"[]", "the request body must be a JSON object, not array"),
    ("string", b'"x"', "the request body must be a JSON object, not string"),
    ("null", b"null", "the request body must be a JSON object, not null"),
    ("empty", b"", "the request body is empty"),
    ("not json", b"name=k&value=v", "invalid JSON: Expecting value at line 1 column 1"),
    ("truncated", b'{"name": "k"', "invalid JSON: Expecting ',' delimiter at line 1 column 13"),
    ("not utf8", b'{"name": "\xff"}', "the request body is not UTF-8"),
    ("name number", b'{"name": 1, "value": "v"}', 'field "name" must be a string, not number'),
    ("value object", b'{"name": "k", "value": {"a": 1}}', 'field "value" must be a string, not object'),
    ("env bool", b'{"name": "k", "value": "v", "env_name": false}', 'field "env_name" must be a string, not boolean'),
    (
        "path array",
        b'{"name": "k", "value": "v", "file_path": ["/x"]}',
        'field "file_path" must be a string, not array',
    ),
]


@pytest.mark.parametrize(("raw", "detail"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
async def test_bad_create_body(gateway: GatewayStack, raw: bytes, detail: str) -> None:
    token = await token_of(gateway)
    reply = await call(gateway.http, "POST", SECRETS, token=token, data=raw)
    assert (reply.status, reply.json) == (400, {"message": INVALID_JSON, "detail": detail})
    assert (await call(gateway.http, "GET", SECRETS, token=token)).raw == b"[]"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"[]", "the request body must be a JSON object, not array"),
        (b'{"description": 5}', 'field "description" must be a string, not number'),
        (b'{"value": true}', 'field "value" must be a string, not boolean'),
    ],
    ids=["array", "description number", "value bool"],
)
async def test_bad_patch_body(gateway: GatewayStack, raw: bytes, detail: str) -> None:
    token = await token_of(gateway)
    created = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
    reply = await call(gateway.http, "PATCH", f"{SECRETS}/k", token=token, data=raw)
    assert (reply.status, reply.json) == (400, {"message": INVALID_JSON, "detail": detail})
    assert json.loads((await call(gateway.http, "GET", SECRETS, token=token)).raw) == [created.json]


def _create_body(size: int) -> bytes:
    """A create body of exactly `size` bytes."""
    empty = b'{"name": "k", "value": ""}'
    return b'{"name": "k", "value": "' + b"v" * (size - len(empty)) + b'"}'


async def test_body_at_the_cap_is_read(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    reply = await call(gateway.http, "POST", SECRETS, token=token, data=_create_body(CAP))
    assert reply.status == 201, reply


TOO_LARGE = {"message": "Request body is too large.", "detail": f"The body must not exceed {CAP} bytes."}


async def test_body_over_the_cap_by_content_length(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    reply = await call(gateway.http, "POST", SECRETS, token=token, data=_create_body(CAP + 1))
    assert (reply.status, reply.json) == (413, TOO_LARGE)
    reply = await call(gateway.http, "PATCH", f"{SECRETS}/k", token=token, data=b"x" * (10 * CAP))
    assert (reply.status, reply.json) == (413, TOO_LARGE)
    assert (await call(gateway.http, "GET", SECRETS, token=token)).raw == b"[]"


async def test_body_over_the_cap_while_streaming(gateway: GatewayStack) -> None:
    token = await token_of(gateway)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer encoding
        body = _create_body(CAP + 1)
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    headers = {"Coder-Session-Token": token, "Content-Type": "application/json"}
    async with gateway.http.post(SECRETS, data=chunks(), headers=headers) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert (response.status, await response.json()) == (413, TOO_LARGE)
    assert (await call(gateway.http, "GET", SECRETS, token=token)).raw == b"[]"


async def test_expect_continue_is_refused_for_a_large_body(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    headers = {"Coder-Session-Token": token, "Content-Type": "application/json"}
    async with gateway.http.post(SECRETS, data=_create_body(CAP + 1), headers=headers, expect100=True) as response:
        assert (response.status, await response.json()) == (413, TOO_LARGE)
    async with gateway.http.post(SECRETS, data=_create_body(100), headers=headers, expect100=True) as response:
        assert response.status == 201


async def test_bad_path_encoding(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    url = aiohttp.client.URL(f"{gateway.url}{SECRETS}/%zz", encoded=True)
    async with gateway.http.get(url, headers={"Coder-Session-Token": token}) as response:
        body = await response.json()
    assert (response.status, body) == (
        400,
        {"message": "Invalid request path.", "detail": "malformed percent escape in the path"},
    )


async def test_encoded_slash_is_part_of_the_name(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    url = aiohttp.client.URL(f"{gateway.url}{SECRETS}/a%2Fb", encoded=True)
    async with gateway.http.get(url, headers={"Coder-Session-Token": token}) as response:
        assert response.status in (400, 404)  # the server's answer for a name holding '/', never a routing 404
        assert (await response.json())["message"] != "Route not found."


REQUEST_IDS = [
    ("given", "req-123.abc:XYZ_9", "req-123.abc:XYZ_9"),
    ("absent", None, None),
    ("with spaces", "a b", None),
    ("too long", "x" * 129, None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("given", "echoed"), [c[1:] for c in REQUEST_IDS], ids=[c[0] for c in REQUEST_IDS])
async def test_request_id(gateway: GatewayStack, given: str | None, echoed: str | None) -> None:
    headers = {} if given is None else {"X-Request-Id": given}
    for path in ("/healthz", SECRETS, "/nope"):
        reply = await call(gateway.http, "GET", path, headers=headers)
        got = reply.headers["X-Request-Id"]
        if echoed is None:
            assert re.fullmatch(r"[0-9a-f]{32}", got), got
        else:
            assert got == echoed


@pytest.mark.parametrize("value", ["5", "S", "123456789S", "5s", "1.5S", "-1S", "5 S"])
async def test_bad_grpc_timeout_header(gateway: GatewayStack, value: str) -> None:
    reply = await call(gateway.http, "GET", SECRETS, token=await token_of(gateway), headers={"Grpc-Timeout": value})
    assert (reply.status, reply.json["message"]) == (400, "Invalid Grpc-Timeout header.")


async def test_good_grpc_timeout_header(gateway: GatewayStack) -> None:
    reply = await call(gateway.http, "GET", SECRETS, token=await token_of(gateway), headers={"Grpc-Timeout": "5S"})
    assert (reply.status, reply.raw) == (200, b"[]")


async def test_success_content_type_and_compact_json(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    reply = await call(gateway.http, "POST", SECRETS, token=token, body={"name": "k", "value": "v"})
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.raw.startswith(b'{"id":"') and b"\n" not in reply.raw


async def test_healthz_serving(gateway: GatewayStack) -> None:
    reply = await call(gateway.http, "GET", "/healthz")
    assert (reply.status, json.loads(reply.raw)) == (200, {"status": "SERVING"})


async def test_metrics(gateway: GatewayStack) -> None:
    token = await token_of(gateway)
    await call(gateway.http, "GET", SECRETS, token=token)
    await call(gateway.http, "GET", f"{SECRETS}/missing", token=token)
    await call(gateway.http, "GET", "/nope")
    reply = await call(gateway.http, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    text = reply.raw.decode()
    for line in [
        'usersecrets_gateway_requests_total{method="GET",route="/api/v2/users/{user}/secrets",status="200"} 1.0',
        'usersecrets_gateway_requests_total{method="GET",route="/api/v2/users/{user}/secrets/{name}",status="404"} 1.0',
        'usersecrets_gateway_requests_total{method="GET",route="unmatched",status="404"} 1.0',
        "usersecrets_gateway_requests_in_flight 1.0",  # this very request
    ]:
        assert line in text, line
    assert (
        'usersecrets_gateway_request_duration_seconds_bucket{le="0.001",method="GET",route="/api/v2/users/{user}/secrets"}'
        in text
    )
    assert token not in text and "missing" not in text


async def test_openapi_is_served_as_generated(gateway: GatewayStack) -> None:
    reply = await call(gateway.http, "GET", openapi.PATH)
    assert reply.status == 200
    assert reply.json == json.loads(gateway.gateway.app[OPENAPI])
    assert reply.json["openapi"] == "3.1.0"


async def test_unknown_methods_share_one_metric_label(gateway: GatewayStack) -> None:
    # Methods aiohttp's parser knows but no route uses (it refuses made-up ones before any handler runs).
    for method in ("PROPFIND", "MKCOL", "PURGE"):
        reply = await call(gateway.http, method, SECRETS)
        assert (reply.status, reply.json) == (405, {"message": "Method not allowed."})
    text = (await call(gateway.http, "GET", "/metrics")).raw.decode()
    assert 'usersecrets_gateway_requests_total{method="OTHER",route="unmatched",status="405"} 3.0' in text
    assert "PROPFIND" not in text
