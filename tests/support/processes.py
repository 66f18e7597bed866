"""The real entry points as child processes: `usersecrets-server` and `usersecrets-gateway`.

Each child gets a clean environment (only the USERSECRETS_* settings the test gives), writes its stderr to a
file (a pipe could fill and stall a chatty debug-level child), and is always stopped by the context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    address: str  # host:port it serves on

    @property
    def lines(self) -> list[str]:
        return self.stderr_path.read_text(errors="replace").splitlines()

    def messages(self) -> list[str]:
        """The `msg` of every JSON log line (gRPC's own native lines are skipped)."""
        found = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                found.append(json.loads(line)["msg"])
        return found

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def exit_code(self, tries: int = 400) -> int | None:
        for _ in range(tries):
            if (code := self.proc.poll()) is not None:
                return code
            await asyncio.sleep(0.025)
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, tries: int = 400) -> None:
    """Poll `check` (every 25 ms) until it is true; a bounded number of tries, so a failure fails, not hangs."""
    for _ in range(tries):
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def _environment(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
    return {**env, **settings}


def spawn(command: str, address: str, directory: Path, settings: dict[str, str]) -> Child:
    directory.mkdir(parents=True, exist_ok=True)
    stderr_path = directory / f"{command}-{address.replace(':', '_')}-{len(list(directory.iterdir()))}.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [str(BIN / command)],
            env=_environment(settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return Child(proc, stderr_path, address)


@contextlib.asynccontextmanager
async def child(command: str, address: str, directory: Path, settings: dict[str, str]) -> AsyncIterator[Child]:
    running = spawn(command, address, directory, settings)
    try:
        yield running
    finally:
        running.kill()


async def grpc_serving(target: str) -> bool:
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
    except grpc.aio.AioRpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


@contextlib.asynccontextmanager
async def server_process(
    directory: Path, listen: str, redis_url: str, key_spec: str, **extra: str
) -> AsyncIterator[Child]:
    settings = {
        "USERSECRETS_REDIS_URL": redis_url,
        "USERSECRETS_ENCRYPTION_KEYS": key_spec,
        "USERSECRETS_GRPC_LISTEN": listen,
        "USERSECRETS_HEALTH_INTERVAL": "0.2",
        **extra,
    }
    async with child("usersecrets-server", listen, directory, settings) as server:

        async def ready() -> bool:
            assert server.proc.poll() is None, f"server exited: {server.lines[-20:]}"
            return await grpc_serving(listen)

        await until(ready, f"server on {listen} serving")
        yield server


async def http_status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
            return reply.status
    except aiohttp.ClientError:
        return None


@contextlib.asynccontextmanager
async def gateway_process(directory: Path, listen: str, grpc_target: str, **extra: str) -> AsyncIterator[Child]:
    settings = {"USERSECRETS_GRPC_TARGET": grpc_target, "USERSECRETS_HTTP_LISTEN": listen, **extra}
    async with child("usersecrets-gateway", listen, directory, settings) as gateway:

        async def ready() -> bool:
            assert gateway.proc.poll() is None, f"gateway exited: {gateway.lines[-20:]}"
            return await http_status(f"http://{listen}/healthz") == 200

        await until(ready, f"gateway on {listen} healthy")
        yield gateway


async def metric(url: str, name: str) -> float | None:
    """One unlabelled sample from a Prometheus text endpoint, or None when it cannot be read."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
            text = await reply.text()
    except aiohttp.ClientError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def as_json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line must be one JSON object, except gRPC core's own native lines (E0000 ... file.cc:12] ...)."""
    parsed = []
    for line in lines:
        if line[:1] in "EWID" and "] " in line and line[1:5].isdigit():
            continue
        parsed.append(json.loads(line))
    return parsed
