"""`make run`'s launcher: its small rules, then the real thing twice in a temporary directory."""

from __future__ import annotations

import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.redis_proc import free_port
from usersecrets.sdk import Client, CreateUserSecretRequest
from usersecrets.sdk.devrun import choose_listen, dev_username, write_private


def test_choose_listen_keeps_a_free_address() -> None:
    port = free_port()
    assert choose_listen(f"127.0.0.1:{port}") == (f"127.0.0.1:{port}", False)


def test_choose_listen_moves_off_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen, moved = choose_listen(f"127.0.0.1:{port}")
    host, _, new_port = chosen.rpartition(":")
    assert (host, moved) == ("127.0.0.1", True)
    assert int(new_port) not in (0, port)


@pytest.mark.parametrize(
    ("user", "want"),
    [
        ("alice", "alice"),
        ("Alice.Smith", "alice-smith"),
        ("a__b", "a-b"),
        ("-x-", "x"),
        ("", "admin"),
        ("...", "admin"),
        ("u" * 40, "u" * 32),
        ("ab" + "-" * 30 + "cd", "ab-cd"),
    ],
)
def test_dev_username(user: str, want: str) -> None:
    assert dev_username({"USER": user}) == want, f"dev_username(USER={user!r}); want {want!r}"


def test_dev_username_without_user() -> None:
    assert dev_username({}) == "admin"


def test_write_private_is_0600_even_over_an_open_file(tmp_path: Path) -> None:
    target = tmp_path / "dev-token"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@dataclass
class DevRun:
    """`python -m usersecrets.sdk.devrun` as a child, its stdout read line by line on a thread."""

    cwd: Path
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.seen.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "usersecrets.sdk.devrun"],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [self.lines.put(line) for line in stdout], daemon=True).start()

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc is not None
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.strip().startswith(prefix):
                return line.strip()[len(prefix) :].strip()
        raise AssertionError(f"no line starting {prefix!r}; output so far:\n{''.join(self.seen)}")

    def interrupt(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def devrun(tmp_path: Path) -> Iterator[DevRun]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
    env.update(
        USER="dev-tester",
        USERSECRETS_GRPC_LISTEN=f"127.0.0.1:{free_port()}",
        USERSECRETS_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
    )
    run = DevRun(tmp_path, env)
    yield run
    run.kill()


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
def test_make_run_twice_keeps_user_token_and_secrets(devrun: DevRun, tmp_path: Path) -> None:
    http_port = int(devrun.env["USERSECRETS_HTTP_LISTEN"].rpartition(":")[2])
    grpc_port = int(devrun.env["USERSECRETS_GRPC_LISTEN"].rpartition(":")[2])
    data = tmp_path / ".data"

    devrun.start()
    url = devrun.wait_for("REST gateway")
    redis_port = int(devrun.wait_for("Redis").split()[0].rsplit(":", 1)[1].split("/")[0])
    assert devrun.wait_for("user") == "dev-tester (created)"
    token = devrun.wait_for("token")
    curl = devrun.wait_for("curl -s -H 'Coder-Session-Token: " + token + "' " + url)
    assert curl == "/api/v2/users/me/secrets"
    assert url == f"http://127.0.0.1:{http_port}"
    for path in ("encryption.key", "dev-token"):
        assert stat.S_IMODE((data / path).stat().st_mode) == 0o600, path
    assert (data / "dev-token").read_text() == token + "\n"

    with Client(url, token, timeout=10) as client:
        made = client.create_user_secret(
            "me", CreateUserSecretRequest("kept across runs", "v-123", env_name="KEPT", file_path="~/kept")
        )
    assert devrun.interrupt() == 0
    for port in (http_port, grpc_port, redis_port):
        assert _refuses(port), f"port {port} still answers after SIGINT"
    assert any((data / "redis").rglob("*.aof")), "Redis kept no append-only file"

    devrun.start()
    assert devrun.wait_for("REST gateway") == url
    assert devrun.wait_for("user") == "dev-tester (existing)"
    assert devrun.wait_for("token") == token
    assert devrun.wait_for("(") == "reused from .data/dev-token)"
    with Client(url, token, timeout=10) as client:
        again = client.user_secret_by_name("me", "kept across runs")
        assert again == made
        assert [s.name for s in client.user_secrets("me")] == ["kept across runs"]
    assert devrun.interrupt() == 0
