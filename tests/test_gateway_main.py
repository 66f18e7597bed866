"""`usersecrets-gateway` as a process: flags, JSON logs on stderr, SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp

from tests.support.redis_proc import free_port
from tests.support.stack import ServerStack


async def test_process_serves_logs_json_and_stops_on_sigterm(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
    env["USERSECRETS_GRPC_TARGET"] = server_stack.grpc_target
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "usersecrets.gateway.main",
        "--http-listen",
        f"127.0.0.1:{port}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    async with http.get("/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            headers = {"Coder-Session-Token": token, "X-Request-Id": "main-test-1"}
            async with http.post(
                "/api/v2/users/me/secrets", json={"name": "k", "value": "hunter2"}, headers=headers
            ) as r:
                assert r.status == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    lines = [json.loads(line) for line in stderr.decode().splitlines()]
    messages = [line["msg"] for line in lines]
    assert messages[0] == "starting" and "listening" in messages and messages[-1] == "stopped"
    access = [line for line in lines if line.get("request_id") == "main-test-1"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [("POST", "/api/v2/users/{user}/secrets", 201)]
    assert token.encode() not in stderr + stdout and b"hunter2" not in stderr + stdout
