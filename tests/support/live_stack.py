"""A live stack started by `make run`'s own launcher: real Redis, server and gateway processes, real HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from tests.support.redis_proc import free_port
from usersecrets.sdk.devrun import Launcher, Running
from usersecrets.sdk.grpc_client import connect, list_user_secret_values
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SERVICE_ROLE

RATE_PER_SECOND = 20  # low enough that a burst outruns the refill even on a slow machine
RATE_BURST = 40


@dataclass
class LiveStack:
    """A server and a gateway started by `make run`'s own launcher, over the session's Redis."""

    running: Running
    launcher: Launcher

    @property
    def url(self) -> str:
        return self.running.url

    def child_pid(self, name: str) -> int:
        return next(c.proc.pid for c in self.launcher.children if c.name == name)

    def new_user(self, roles: tuple[str, ...] = ()) -> tuple[str, str, str]:
        """(id, username, token) of a fresh user; callable from sync and async tests alike."""
        username = "u-" + uuid.uuid4().hex[:12]

        async def make() -> tuple[str, str, str]:
            client = aioredis.from_url(self.running.redis_url)
            try:
                ids = IdentityStore(client)
                user = await ids.create_user(username, roles)
                _, token = await ids.create_token(user.id, 3600)
            finally:
                await client.aclose()
            return user.id, username, token

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, make()).result()

    def spawn_gateway(self, grpc_target: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
        """A second gateway process (for 503 / 504 cases) with its own settings."""
        listen = f"127.0.0.1:{free_port()}"
        child_env = {**os.environ, "USERSECRETS_GRPC_TARGET": grpc_target, "USERSECRETS_HTTP_LISTEN": listen, **env}
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "usersecrets-gateway")],
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://{listen}"
        self.launcher.wait_until("the extra gateway", lambda: _accepts(listen))
        return proc, url


def _accepts(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.3).close()
    except OSError:
        return False
    return True


def start_live_stack(directory: Path, redis_url: str) -> Iterator[LiveStack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
    env.update(
        USER="sdk-tests",
        USERSECRETS_REDIS_URL=redis_url,
        USERSECRETS_GRPC_LISTEN=f"127.0.0.1:{free_port()}",
        USERSECRETS_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        USERSECRETS_RATE_LIMIT=str(RATE_PER_SECOND),
        USERSECRETS_RATE_LIMIT_BURST=str(RATE_BURST),
    )
    launcher = Launcher(directory / ".data", env, out=io.StringIO())
    try:
        yield LiveStack(launcher.start(), launcher)
    finally:
        launcher.stop_children()


def values_of(stack: LiveStack, username: str) -> dict[str, str]:
    """The stored values, read the way internal services read them: gRPC with the service role."""
    _, _, service_token = stack.new_user((SERVICE_ROLE,))
    with connect(stack.running.grpc_target, service_token) as conn:
        return {item.secret.name: item.value for item in list_user_secret_values(conn.stub, username)}
