"""The REST gateway on a free port over real HTTP, in the test's event loop, in front of a real gRPC server.

`running_gateway(grpc_target)` serves `create_app` through aiohttp's AppRunner + TCPSite on port 0.
`gateway_in_front_of(server_stack)` puts one in front of the lead's server and hands out an HTTP client;
tests that stop the server use `restart_server` to bring it back on the same port.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.stack import ServerStack
from usersecrets.gateway.app import create_app
from usersecrets.gateway.config import GatewayConfig
from usersecrets.server.app import ServerApp, create_server
from usersecrets.server.crypto import KeyRing
from usersecrets.server.model import User

API = "/api/v2"


@dataclasses.dataclass
class RunningGateway:
    app: web.Application
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def running_gateway(grpc_target: str, **overrides: Any) -> AsyncIterator[RunningGateway]:
    config = GatewayConfig(grpc_target=grpc_target, http_listen="127.0.0.1:0", **overrides)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningGateway(app, runner, port)
    finally:
        await runner.cleanup()


@dataclasses.dataclass
class GatewayStack:
    """A gateway in front of a server: `http` is a client session bound to the gateway's base URL."""

    server: ServerStack
    gateway: RunningGateway
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.gateway.url

    async def user(self, username: str, roles: tuple[str, ...] = ()) -> tuple[User, str]:
        return await self.server.user(username, roles)

    async def restart_server(self) -> ServerApp:
        """A new server on the stopped one's port, same Redis and key ring; the caller stops it."""
        port = self.server.app.port
        config = dataclasses.replace(self.server.config, grpc_listen=f"127.0.0.1:{port}")
        app = await create_server(config, key_ring=KeyRing.parse(self.server.key_spec))
        await app.start()
        return app


@asynccontextmanager
async def gateway_in_front_of(server: ServerStack, **overrides: Any) -> AsyncIterator[GatewayStack]:
    async with (
        running_gateway(server.grpc_target, **overrides) as gateway,
        aiohttp.ClientSession(gateway.url, auto_decompress=False) as http,
    ):
        yield GatewayStack(server, gateway, http)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: Any  # CIMultiDictProxy
    raw: bytes

    @property
    def json(self) -> Any:
        assert self.headers.get("Content-Type") == "application/json", (self.status, self.headers, self.raw)
        return json.loads(self.raw)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP request; `body` is sent as JSON, `data` as raw bytes."""
    sent = dict(headers or {})
    if token is not None:
        sent["Coder-Session-Token"] = token
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    async with http.request(method, path, data=data, headers=sent) as response:
        return Reply(response.status, response.headers, await response.read())
