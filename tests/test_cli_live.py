"""The `usersecrets` entry point as a real subprocess against a live stack: output, exit status, no leaks.

Every output of every command run here is kept, and the canary values given on stdin or in files must
never appear in any of it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import termios
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.live_stack import LiveStack, start_live_stack, values_of
from tests.support.redis_proc import RedisProcess, free_port
from usersecrets.sdk import Client, CreateUserSecretRequest, ValidationError

BIN = str(Path(sys.executable).parent / "usersecrets")
CANARIES = (
    "canary-stdin-6b1f0c",
    "canary-file-93ad7e",
    "canary-update-2c55a1",
    "canary-invalid-77e0b4",
    "canary-prompt-0d9e3f",
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    """Runs `usersecrets` with a clean environment; remembers everything it printed."""

    stack: LiveStack
    token: str = ""
    username: str = ""
    seen: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("USERSECRETS_")}
        env["USERSECRETS_URL"] = self.stack.url
        if self.token:
            env["USERSECRETS_TOKEN"] = self.token
        return {**env, **extra}

    def __call__(self, *argv: str, stdin: bytes | None = None, **env: str) -> Result:
        done = subprocess.run(
            [BIN, *argv],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=self.env(**env),
            timeout=30,
        )
        result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
        self.seen.extend((result.out, result.err))
        return result


@pytest.fixture(scope="module")
def stack(redis_proc: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    yield from start_live_stack(tmp_path_factory.mktemp("cli-stack"), redis_proc.url)


@pytest.fixture
def cli(stack: LiveStack) -> Iterator[Cli]:
    _, username, token = stack.new_user()
    runner = Cli(stack, token, username)
    yield runner
    for text in runner.seen:
        for canary in CANARIES:
            assert canary not in text, f"a value leaked into CLI output: {text!r}"


HELP_CASES = [
    ((), "usage: usersecrets [-h] COMMAND ...", ["secrets", "admin"]),
    (("secrets",), "usage: usersecrets secrets [-h] ACTION ...", ["list", "get", "create", "update", "delete"]),
    (("secrets", "list"), "usage: usersecrets secrets list", ["--json", "--url", "--token-file", "USERSECRETS_URL"]),
    (("secrets", "get"), "usage: usersecrets secrets get", ["NAME", "--json", "never its value"]),
    (
        ("secrets", "create"),
        "usage: usersecrets secrets create",
        ["--value-file", "--value-stdin", "--value-prompt", "--value", "--env-name", "--file-path", "--description"],
    ),
    (("secrets", "update"), "usage: usersecrets secrets update", ["omit to keep", "--value-stdin"]),
    (("secrets", "delete"), "usage: usersecrets secrets delete", ["NAME"]),
    (("admin",), "usage: usersecrets admin", ["create-user", "create-token", "revoke-token", "rotate-keys"]),
    (("admin", "create-user"), "usage: usersecrets admin create-user", ["--username", "--role"]),
    (("admin", "create-token"), "usage: usersecrets admin create-token", ["--user", "--lifetime"]),
]


@pytest.mark.parametrize(
    ("argv", "usage", "mentions"), HELP_CASES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else None
)
def test_help_on_every_command(cli: Cli, argv: tuple[str, ...], usage: str, mentions: list[str]) -> None:
    result = cli(*argv, "--help")
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(usage), result.out
    for word in mentions:
        assert word in result.out, f"`usersecrets {' '.join(argv)} --help` does not mention {word}"


USAGE_CASES = [
    (("secrets",), "the following arguments are required: ACTION"),
    (("secrets", "get"), "the following arguments are required: NAME"),
    (("secrets", "list", "--bogus"), "unrecognized arguments: --bogus"),
    (("secrets", "create", "x", "--value", "a", "--value-stdin"), "not allowed with argument"),
    (
        ("secrets", "create", "x"),
        "usersecrets: error: no value given: use --value-file PATH, --value-stdin, --value-prompt or --value",
    ),
    (
        ("secrets", "update", "x"),
        "usersecrets: error: nothing to update: give a value option, --description, --env-name or --file-path",
    ),
    (
        ("secrets", "create", "x", "--value-file", "/nonexistent/v"),
        "usersecrets: error: cannot read --value-file: No such file or directory",
    ),
    (
        ("secrets", "list", "--url", "ftp://x"),
        "usersecrets: error: url must be http:// or https:// with a host, got 'ftp://x'",
    ),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_CASES, ids=[" ".join(c[0]) for c in USAGE_CASES])
def test_usage_errors_exit_2(cli: Cli, argv: tuple[str, ...], message: str) -> None:
    result = cli(*argv)
    assert (result.code, result.out) == (2, ""), result
    assert message in result.err


def test_value_on_stdin_must_be_utf8(cli: Cli) -> None:
    result = cli("secrets", "create", "bin", "--value-stdin", stdin=b"\xff\xfe")
    assert (result.code, result.err) == (2, "usersecrets: error: the value from standard input is not UTF-8 text\n")


def test_lifecycle_output(cli: Cli, stack: LiveStack, tmp_path: Path) -> None:
    name = "deploy key 100%"
    fields = ("--env-name", "DEPLOY", "--file-path", "~/.deploy", "--description", "ci")
    made = cli("secrets", "create", name, "--value-stdin", *fields, stdin=CANARIES[0].encode())
    assert (made.code, made.err) == (0, ""), made
    with Client(stack.url, cli.token) as client:
        secret = client.user_secret_by_name("me", name)
    block = secret.to_json()
    assert made.out == "".join(f"{(k + ':').ljust(12)} {v}\n" for k, v in block.items())

    value_file = tmp_path / "value"
    value_file.write_text(CANARIES[1] + "\n")
    second = cli("secrets", "create", "b", "--value-file", str(value_file), "--json")
    assert second.code == 0
    other = json.loads(second.out)
    assert (other["name"], other["env_name"], other["file_path"]) == ("b", "", "")
    third = cli("secrets", "create", "c", "--value", "plain", "--env-name", "C_VAR")
    assert third.code == 0

    listing = cli("secrets", "list")
    assert listing.code == 0
    with Client(stack.url, cli.token) as client:
        by_name = {s.name: s for s in client.user_secrets("me")}
    when = {n: s.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") for n, s in by_name.items()}
    assert listing.out.splitlines() == [
        "NAME             ENV     FILE       UPDATED",
        f"b                -       -          {when['b']}",
        f"c                C_VAR   -          {when['c']}",
        f"deploy key 100%  DEPLOY  ~/.deploy  {when[name]}",
    ]
    as_json = cli("secrets", "list", "--json")
    assert json.loads(as_json.out) == [by_name[n].to_json() for n in ("b", "c", name)]
    assert cli("secrets", "get", name, "--json").out == json.dumps(block, indent=2) + "\n"
    assert cli("secrets", "get", name).out == made.out

    assert json.loads(cli("secrets", "get", "b", "--json").out)["id"] == other["id"]

    updated = cli("secrets", "update", name, "--value-stdin", "--description", "", stdin=CANARIES[2].encode())
    assert updated.code == 0, updated
    assert "description: \n" in updated.out
    assert cli("secrets", "update", "b", "--env-name", "B_VAR", "--json").code == 0

    assert values_of(stack, cli.username) == {name: CANARIES[2], "b": CANARIES[1] + "\n", "c": "plain"}

    deleted = cli("secrets", "delete", name)
    assert (deleted.code, deleted.out, deleted.err) == (0, "", f"Deleted secret {name}.\n")
    gone = cli("secrets", "get", name)
    assert (gone.code, gone.out) == (3, "")


def test_error_lines_and_exit_codes(cli: Cli, stack: LiveStack) -> None:
    assert cli("secrets", "create", "one", "--value", "v", "--env-name", "ONE").code == 0
    _, other, _ = stack.new_user()
    cases = [
        (("secrets", "get", "missing"), None, 3, [
            "error: Resource not found or you do not have access to this resource (HTTP 404)",
        ]),
        (("secrets", "delete", "missing"), None, 3, [
            "error: Resource not found or you do not have access to this resource (HTTP 404)",
        ]),
        (("secrets", "create", "one", "--value-stdin"), CANARIES[3], 4, [
            "error: Validation failed. (HTTP 409)",
            "error:   name: name already in use",
        ]),
        (("secrets", "create", "two", "--value-stdin", "--env-name", "PATH", "--file-path", "rel"), CANARIES[3], 5, [
            "error: Validation failed. (HTTP 400)",
            "error:   env_name: " + _detail_for(cli, "PATH", "rel", "env_name"),
            "error:   file_path: " + _detail_for(cli, "PATH", "rel", "file_path"),
        ]),
        (("secrets", "list", "--user", other), None, 6, ["error: Forbidden. (HTTP 403)"]),
        (("secrets", "list", "--user", "no-such-user-0"), None, 5, [
            'error: "user" must be an existing uuid or username. (HTTP 400)',
        ]),
    ]  # fmt: skip
    for argv, stdin, code, lines in cases:
        result = cli(*argv, stdin=None if stdin is None else stdin.encode())
        assert (result.code, result.out, result.err.splitlines()) == (code, "", lines), f"usersecrets {argv}"


def _detail_for(cli: Cli, env_name: str, file_path: str, field_name: str) -> str:
    """The server's own detail text for a field (the test pins the CLI's layout, not the server's wording)."""
    with Client(cli.stack.url, cli.token) as client:
        try:
            client.create_user_secret(
                "me", CreateUserSecretRequest("probe", "v", env_name=env_name, file_path=file_path)
            )
        except ValidationError as exc:
            return next(v.detail for v in exc.validations if v.field == field_name)
    raise AssertionError("the probe was accepted")


@pytest.mark.parametrize(
    ("env", "code", "line"),
    [
        ({"USERSECRETS_TOKEN": ""}, 6, "error: No session token: set USERSECRETS_TOKEN or pass --token-file."),
        (
            {"USERSECRETS_TOKEN": "nosuchid12-secretpart"},
            6,
            "error: You are signed out or your session has expired. Please sign in again to continue.",
        ),
        ({"USERSECRETS_URL": "http://127.0.0.1:PORT"}, 1, "error: Cannot connect to the server."),
    ],
    ids=["no-token", "unknown-token", "unreachable"],
)
def test_auth_and_transport_failures(cli: Cli, env: dict[str, str], code: int, line: str) -> None:
    env = {k: v.replace("PORT", str(free_port())) for k, v in env.items()}
    result = cli("secrets", "list", **env)
    assert (result.code, result.out) == (code, "")
    assert result.err.startswith(line), result.err
    assert "nosuchid12-secretpart" not in result.err


def test_token_file(cli: Cli, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(cli.token + "\n")
    result = cli("secrets", "list", "--token-file", str(token_file), USERSECRETS_TOKEN="")
    assert (result.code, result.out, result.err) == (0, "NAME  ENV  FILE  UPDATED\n", "")


def test_admin_is_mounted(cli: Cli, stack: LiveStack) -> None:
    redis = {"USERSECRETS_REDIS_URL": stack.running.redis_url}
    created = cli("admin", "create-user", "--username", "cli-admin-made", **redis)
    assert created.code == 0, created
    assert json.loads(created.out)["username"] == "cli-admin-made"
    token = cli("admin", "create-token", "--user", "cli-admin-made", **redis)
    assert token.code == 0 and token.out.count("\n") == 1
    listing = cli("secrets", "list", USERSECRETS_TOKEN=token.out.strip())
    assert (listing.code, listing.out) == (0, "NAME  ENV  FILE  UPDATED\n")


def test_hidden_prompt_in_a_terminal(cli: Cli, stack: LiveStack) -> None:
    """With a terminal attached and no value option, create asks without echo; the typed value never shows."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [BIN, "secrets", "create", "prompted"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli.env(),
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the pty becomes the controlling terminal
    )
    os.close(slave)
    screen = b""
    try:
        while b"(hidden): " not in screen:
            screen += os.read(master, 1024)
        os.write(master, CANARIES[4].encode() + b"\n")
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
    finally:
        assert proc.wait(timeout=30) == 0, screen
        os.close(master)
    cli.seen.append(screen.decode(errors="replace"))
    assert screen.startswith(b"Value for prompted (hidden): ")
    assert b"name:        prompted" in screen
    assert values_of(stack, cli.username) == {"prompted": CANARIES[4]}
