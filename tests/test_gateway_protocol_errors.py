"""Requests aiohttp's parser refuses get the contract's JSON body, never an echo of the bytes that were sent."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.grpc_helpers import assert_absent, formatted_logs
from tests.support.stack import ServerStack
from usersecrets.gateway import errors, protocol_errors

CANARY = "tokcanary-Zq8RmW3vXp9LtY2nHs6KcJ"

BAD_REQUESTS = [
    (
        "control char in a header value",
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: a\x01{CANARY}\r\n\r\n",
    ),
    ("header line without a colon", f"GET /healthz HTTP/1.1\r\nHost: x\r\nCoder-Session-Token {CANARY}\r\n\r\n"),
    ("control char in the path", f"GET /api/v2/users/me/secrets/\x01{CANARY} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header line past the bound", f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {CANARY}{'p' * 9000}\r\n\r\n"),
    (
        "too many headers",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: {CANARY}\r\n" for i in range(80)) + "\r\n",
    ),
    ("bad content-length", f"POST /api/v2/users/me/secrets HTTP/1.1\r\nHost: x\r\nContent-Length: {CANARY}\r\n\r\n"),
]


async def raw_exchange(gw: GatewayStack, payload: bytes) -> tuple[bytes, dict[str, str], bytes]:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=5)  # only ends because the gateway closes it
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status_line.encode(), headers, body


@pytest.mark.parametrize("payload", [p for _, p in BAD_REQUESTS], ids=[i for i, _ in BAD_REQUESTS])
async def test_malformed_http_gets_the_contract_body_and_no_echo(
    server_stack: ServerStack, caplog: pytest.LogCaptureFixture, payload: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with gateway_in_front_of(server_stack) as gw:
        status_line, headers, body = await raw_exchange(gw, payload.encode("latin-1"))
        # The gateway serves the next connection normally.
        health = await call(gw.http, "GET", "/healthz")
    assert status_line.split(b" ", 2)[1] == b"400", status_line
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"message": protocol_errors.MALFORMED}
    assert health.status == 200
    lines = formatted_logs(caplog.records)
    assert any('"request refused before routing"' in line and '"status": 400' in line for line in lines), lines
    for text in [*lines, status_line, repr(headers), body]:
        assert_absent(text, CANARY)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, protocol_errors.MALFORMED),
        (413, errors.BODY_TOO_LARGE),
        (431, "Request Header Fields Too Large."),
        (500, errors.INTERNAL),
        (503, errors.INTERNAL),
        (499, protocol_errors.MALFORMED),
    ],
)
def test_every_status_has_a_fixed_message(status: int, message: str) -> None:
    assert protocol_errors._message(status) == message
