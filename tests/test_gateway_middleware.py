"""The middleware's last line of defence: an unexpected exception becomes the fallback JSON 500, logged by
type and frames only (its text could quote request data)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from usersecrets.common.jsonlog import JsonFormatter
from usersecrets.gateway.app import ROUTER, Local, create_app
from usersecrets.gateway.config import GatewayConfig
from usersecrets.gateway.httprule import parse
from usersecrets.gateway.pattern import Pattern
from usersecrets.gateway.router import Route, Router


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("hunter2 leaked into an exception")


async def _http_error(request: web.Request) -> web.Response:
    raise web.HTTPRequestEntityTooLarge(max_size=1, actual_size=2)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = create_app(GatewayConfig(grpc_target="127.0.0.1:1"))
    # Fault injection: the real app with two endpoints that fail in ways no real endpoint should.
    app[ROUTER] = Router(
        [
            Route("GET", Pattern.compile(parse("/boom")), Local(_boom)),
            Route("GET", Pattern.compile(parse("/http-error")), Local(_http_error)),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_unexpected_exception_is_fallback_json(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession(url) as http, http.get("/boom", headers={"Accept": "text/html"}) as response:
        assert response.status == 500
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"message": "Internal error."}
        assert response.headers["X-Request-Id"]
    lines = [JsonFormatter().format(r) for r in caplog.records]
    errors = [json.loads(line) for line in lines if '"unhandled error"' in line]
    assert len(errors) == 1 and errors[0]["exc_type"] == "RuntimeError"
    assert all("hunter2" not in line for line in lines)
    access = [json.loads(line) for line in lines if '"msg": "request"' in line]
    assert [(a["route"], a["status"]) for a in access] == [("/boom", 500)]


async def test_aiohttp_http_exception_becomes_json(url: str) -> None:
    async with aiohttp.ClientSession(url) as http, http.get("/http-error") as response:
        assert (response.status, await response.json()) == (413, {"message": "Request Entity Too Large"})


def test_formatter_keeps_fields_and_drops_exception_text() -> None:
    try:
        raise ValueError("secret-text")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    record.fields = {"request_id": "r1"}
    line = json.loads(JsonFormatter().format(record))
    assert (line["msg"], line["level"], line["request_id"], line["exc_type"]) == ("boom", "error", "r1", "ValueError")
    assert "secret-text" not in json.dumps(line)
