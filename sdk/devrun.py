"""`make run`: the whole service on one machine, for trying it out and for development.

Starts a persistent Redis under `.data/redis/` (unless USERSECRETS_REDIS_URL is set), creates or reuses the
key file `.data/encryption.key` (0600), starts `usersecrets-server` and `usersecrets-gateway` as children,
waits until both are healthy, makes sure a first user exists and holds a valid token (kept in
`.data/dev-token`, 0600), prints how to call it, and serves until SIGINT or SIGTERM, which stop every child in
order (gateway, server, Redis). A second run finds the same user, token and secrets.

Children run in their own session so a terminal's Ctrl-C reaches only this launcher, which then stops them
gracefully; on Linux they also get SIGTERM if the launcher itself dies.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from usersecrets.common.localhost import free_port, redis_binary
from usersecrets.sdk import errors
from usersecrets.sdk.sync_client import Client
from usersecrets.server import keys
from usersecrets.server.crypto import load_or_create_key_file
from usersecrets.server.redis_client import connect

DEFAULT_GRPC_LISTEN = "127.0.0.1:50051"
DEFAULT_HTTP_LISTEN = "127.0.0.1:8080"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
FALLBACK_USERNAME = "admin"


class Stopped(Exception):
    """A signal asked the launcher to stop before it was ready."""


class LaunchError(Exception):
    """Something the operator has to fix; reported on one line."""


def redis_server_binary() -> str:
    try:
        return redis_binary("redis-server")
    except FileNotFoundError as exc:
        raise LaunchError(str(exc)) from exc


def choose_listen(address: str) -> tuple[str, bool]:
    """`address` if it can be bound now, else a free port on the same host; and whether it moved."""
    host, _, port = address.rpartition(":")
    host = host or "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]"), int(port)))
            return f"{host}:{port}", False
        except OSError:
            probe.bind((host.strip("[]"), 0))
            return f"{host}:{probe.getsockname()[1]}", True


def dev_username(environ: dict[str, str]) -> str:
    """A valid username from $USER (letters, digits, single inner hyphens, at most 32), else "admin"."""
    raw = environ.get("USER", "").lower()
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", raw)).strip("-")[:32].strip("-")
    return cleaned or FALLBACK_USERNAME


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask, or an older file, may have other bits
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class Running:
    """What a started stack answers on, and who may call it."""

    url: str
    grpc_target: str
    redis_url: str
    username: str
    token: str = field(repr=False)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Launcher:
    data: Path
    environ: dict[str, str]
    out: TextIO = sys.stdout
    children: list[Child] = field(default_factory=list)
    signals: int = 0

    # -- lifecycle ---------------------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            self.say("second signal: killing the children now")
            for child in self.children:
                if child.proc.poll() is None:
                    child.proc.kill()

    def check(self) -> None:
        if self.signals:
            raise Stopped()
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                tail = child.log.read_text(errors="replace")[-1500:] if child.log.exists() else ""
                raise LaunchError(f"{child.name} exited with status {code}; last log lines:\n{tail}")

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> int:
        try:
            self.start()
            while True:
                self.check()
                time.sleep(0.2)
        except Stopped:
            self.say("stopping...")
            return 0
        except LaunchError as exc:
            print(f"make run: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            self.stop_children()

    def stop_children(self) -> None:
        # Reverse start order: the gateway stops taking requests first, Redis goes last.
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.terminate()
                try:
                    child.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.say(f"{child.name} did not stop in {STOP_TIMEOUT:.0f}s; killing it")
                    child.proc.kill()
                    child.proc.wait()
        self.children.clear()

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        log = self.data / "logs" / f"{name}.log"
        with open(log, "ab") as sink:
            proc = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # only prctl: safe after fork
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def wait_until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise LaunchError(f"{what} was not ready after {READY_TIMEOUT:.0f}s; see {self.data / 'logs'}")
            time.sleep(0.1)

    # -- the steps ---------------------------------------------------------------------------------------

    def start(self) -> Running:
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.data / "logs").mkdir(exist_ok=True)
        child_env = dict(self.environ)
        if not child_env.get("USERSECRETS_ENCRYPTION_KEYS", "").strip():
            key_file = self.data / "encryption.key"
            try:
                load_or_create_key_file(str(key_file))
            except ValueError as exc:
                raise LaunchError(str(exc)) from exc
            child_env["USERSECRETS_KEY_FILE"] = str(key_file.resolve())
        redis_url = child_env.get("USERSECRETS_REDIS_URL") or self.start_redis()
        child_env["USERSECRETS_REDIS_URL"] = redis_url

        grpc_listen = self.listen("gRPC", child_env.get("USERSECRETS_GRPC_LISTEN") or DEFAULT_GRPC_LISTEN)
        http_listen = self.listen("HTTP", child_env.get("USERSECRETS_HTTP_LISTEN") or DEFAULT_HTTP_LISTEN)
        child_env["USERSECRETS_GRPC_LISTEN"] = grpc_listen
        self.spawn("server", _command("usersecrets-server", "usersecrets.server.main"), child_env)
        self.wait_until("the gRPC server", lambda: _grpc_serving(grpc_listen))
        child_env["USERSECRETS_GRPC_TARGET"] = grpc_listen
        child_env["USERSECRETS_HTTP_LISTEN"] = http_listen
        self.spawn("gateway", _command("usersecrets-gateway", "usersecrets.gateway.main"), child_env)
        url = f"http://{http_listen}"
        self.wait_until("the REST gateway", lambda: _http_healthy(url))

        username, created = self.ensure_user(redis_url, child_env)
        token, reused = self.ensure_token(url, username, child_env)
        self.banner(url, grpc_listen, redis_url, username, created, token, reused)
        return Running(url, grpc_listen, redis_url, username, token)

    def listen(self, what: str, address: str) -> str:
        chosen, moved = choose_listen(address)
        if moved:
            self.say(f"{what} address {address} is taken; using {chosen} instead")
        return chosen

    def start_redis(self) -> str:
        directory = self.data / "redis"
        directory.mkdir(mode=0o700, exist_ok=True)
        port = str(free_port())
        argv = [
            redis_server_binary(),
            "--port", port,
            "--bind", "127.0.0.1",
            "--dir", str(directory.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            # A secret's hash (a ~140-byte sealed value for a 100-byte secret) stays a compact listpack.
            "--hash-max-listpack-value", "256",
            "--save", "",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.spawn("redis", argv, dict(self.environ))
        url = f"redis://127.0.0.1:{port}/0"
        self.wait_until("Redis", lambda: _redis_answers(url))
        return url

    def ensure_user(self, redis_url: str, env: dict[str, str]) -> tuple[str, bool]:
        remembered = self.data / "dev-user"
        username = remembered.read_text().strip() if remembered.exists() else dev_username(self.environ)
        exists = asyncio.run(_username_taken(redis_url, username))
        if not exists:
            self.admin(env, "create-user", "--username", username)
        remembered.write_text(username + "\n")
        return username, not exists

    def ensure_token(self, url: str, username: str, env: dict[str, str]) -> tuple[str, bool]:
        stored = self.data / "dev-token"
        if stored.exists():
            token = stored.read_text().strip()
            try:
                with Client(url, token, timeout=10) as client:
                    client.user_secrets("me")
                return token, True
            except errors.UnauthorizedError:
                pass  # expired or revoked: mint a new one below
            except errors.UserSecretsError as exc:
                raise LaunchError(f"checking the stored dev token failed: {exc}") from exc
        token = self.admin(env, "create-token", "--user", username).strip()
        write_private(stored, token + "\n")
        return token, False

    def admin(self, env: dict[str, str], *argv: str) -> str:
        self.check()
        done = subprocess.run(
            [sys.executable, "-m", "usersecrets.sdk.cli", "admin", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
        )
        if done.returncode != 0:
            raise LaunchError(f"usersecrets admin {argv[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def banner(
        self, url: str, grpc_listen: str, redis_url: str, user: str, created: bool, token: str, reused: bool
    ) -> None:
        where = f" (append-only files in {self.data / 'redis'})" if "USERSECRETS_REDIS_URL" not in self.environ else ""
        body = json.dumps({"name": "hello", "value": "world"})
        lines = [
            "usersecrets is running. Ctrl-C stops it.",
            f"  REST gateway  {url}",
            f"  gRPC server   {grpc_listen}",
            f"  Redis         {_without_password(redis_url)}{where}",
            f"  logs          {self.data / 'logs'}",
            f"  user          {user} ({'created' if created else 'existing'})",
            f"  token         {token}",
            f"                ({'reused from' if reused else 'saved in'} {self.data / 'dev-token'})",
            "",
            "Try it:",
            f"  curl -s -H 'Coder-Session-Token: {token}' -H 'Content-Type: application/json' \\",
            f"       -d '{body}' {url}/api/v2/users/me/secrets",
            f"  curl -s -H 'Coder-Session-Token: {token}' {url}/api/v2/users/me/secrets",
            "",
            f"  export USERSECRETS_URL={url} USERSECRETS_TOKEN=$(cat {self.data / 'dev-token'})",
            "  .venv/bin/usersecrets secrets list",
        ]
        self.say("\n".join(lines))


def _command(script: str, module: str) -> list[str]:
    beside = Path(sys.executable).parent / script
    return [str(beside)] if beside.exists() else [sys.executable, "-m", module]


def _without_password(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


async def _username_taken(redis_url: str, username: str) -> bool:
    """Through the server's own client, so a cluster or Sentinel URL works as it does for the server."""
    client = connect(redis_url)
    try:
        return bool(await client.exists(keys.username(username)))
    finally:
        await client.aclose()


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _grpc_serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def _http_healthy(url: str) -> bool:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=0.5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usersecrets.sdk.devrun", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("USERSECRETS_DATA_DIR", ".data"),
        help="where Redis data, the key file, the dev token and logs live (env USERSECRETS_DATA_DIR; default .data)",
    )
    args = parser.parse_args(argv)
    launcher = Launcher(Path(args.data_dir), dict(os.environ))
    signal.signal(signal.SIGINT, launcher.on_signal)
    signal.signal(signal.SIGTERM, launcher.on_signal)
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
