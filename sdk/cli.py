"""`usersecrets`: manage your own secrets (`secrets ...`) and, for operators, users and keys (`admin ...`).

Exit status: 0 success, 1 other failure, 2 usage, 3 not found, 4 conflict, 5 rejected request (validation,
limits, size), 6 unauthorized or forbidden (or no token). Errors are written to stderr, one line each; a secret
value is never printed, and `--value` is the only way to put one on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from usersecrets.sdk import errors
from usersecrets.sdk._core import DEFAULT_TIMEOUT, DEFAULT_URL, TOKEN_ENV, URL_ENV
from usersecrets.sdk.models import CreateUserSecretRequest, UpdateUserSecretRequest, UserSecret
from usersecrets.sdk.sync_client import Client
from usersecrets.server.admin import add_admin_parser, run_admin

EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_REJECTED = 5
EXIT_DENIED = 6

# Most specific first: the first class the error is an instance of decides.
EXIT_CODES: tuple[tuple[type[errors.UserSecretsError], int], ...] = (
    (errors.NotFoundError, EXIT_NOT_FOUND),
    (errors.ConflictError, EXIT_CONFLICT),
    (errors.BadRequestError, EXIT_REJECTED),
    (errors.PayloadTooLargeError, EXIT_REJECTED),
    (errors.UnauthorizedError, EXIT_DENIED),
    (errors.ForbiddenError, EXIT_DENIED),
)


class UsageError(Exception):
    """A mistake in how the command was called, found after argparse: exit status 2."""


def exit_code_for(error: errors.UserSecretsError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return EXIT_OTHER


# -- output --------------------------------------------------------------------------------------------


def printable(text: str) -> str:
    """Names are the user's own text, but a newline or escape sequence must not break a table or a terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_table(secrets: Sequence[UserSecret]) -> str:
    rows = [("NAME", "ENV", "FILE", "UPDATED")]
    rows += [
        (printable(s.name), printable(s.env_name) or "-", printable(s.file_path) or "-", _when(s.updated_at))
        for s in secrets
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    )


def render_secret(secret: UserSecret) -> str:
    fields = secret.to_json()
    width = max(len(key) for key in fields) + 1
    return "\n".join(f"{(key + ':').ljust(width)} {printable(value)}" for key, value in fields.items())


def _emit(out: TextIO, data: UserSecret | list[UserSecret] | None, as_json: bool) -> None:
    if data is None:
        return
    if as_json:
        payload = [s.to_json() for s in data] if isinstance(data, list) else data.to_json()
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    elif isinstance(data, list):
        out.write(render_table(data) + "\n")
    else:
        out.write(render_secret(data) + "\n")


def report(error: errors.UserSecretsError, err: TextIO, url: str) -> None:
    line = f"error: {error.message}"
    if error.detail:
        line += f" {error.detail}"
    line += f" (HTTP {error.status})" if error.status else f" ({url})"
    err.write(printable(line) + "\n")
    for item in error.validations:
        err.write(printable(f"error:   {item.field}: {item.detail}") + "\n")


# -- input ---------------------------------------------------------------------------------------------


def read_value(args: argparse.Namespace, required: bool) -> str | None:
    """The value from the one source the caller chose; a terminal prompt when none was chosen for create."""
    if args.value_file is not None:
        try:
            with open(args.value_file, "rb") as f:
                return _text(f.read(), f"--value-file {args.value_file}")
        except OSError as exc:
            raise UsageError(f"cannot read --value-file: {exc.strerror}") from exc
    if args.value_stdin:
        return _text(sys.stdin.buffer.read(), "standard input")
    if args.value is not None:
        return args.value
    if args.value_prompt or (required and sys.stdin.isatty()):
        return getpass.getpass(f"Value for {printable(args.name)} (hidden): ")
    if required:
        raise UsageError("no value given: use --value-file PATH, --value-stdin, --value-prompt or --value")
    return None


def _text(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the value from {source} is not UTF-8 text") from exc


def read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --token-file {args.token_file}") from exc
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise errors.UnauthorizedError(0, f"No session token: set {TOKEN_ENV} or pass --token-file.")
    return token


# -- commands ------------------------------------------------------------------------------------------


def cmd_list(client: Client, args: argparse.Namespace) -> list[UserSecret]:
    return client.user_secrets(args.user)


def cmd_get(client: Client, args: argparse.Namespace) -> UserSecret:
    return client.user_secret_by_name(args.user, args.name)


def cmd_create(client: Client, args: argparse.Namespace) -> UserSecret:
    value = read_value(args, required=True)
    assert value is not None
    request = CreateUserSecretRequest(
        name=args.name,
        value=value,
        description=args.description or "",
        env_name=args.env_name or "",
        file_path=args.file_path or "",
    )
    return client.create_user_secret(args.user, request)


def cmd_update(client: Client, args: argparse.Namespace) -> UserSecret:
    request = UpdateUserSecretRequest(
        value=read_value(args, required=False),
        description=args.description,
        env_name=args.env_name,
        file_path=args.file_path,
    )
    if request.is_empty():
        raise UsageError("nothing to update: give a value option, --description, --env-name or --file-path")
    return client.update_user_secret(args.user, args.name, request)


def cmd_delete(client: Client, args: argparse.Namespace) -> None:
    client.delete_user_secret(args.user, args.name)
    sys.stderr.write(f"Deleted secret {printable(args.name)}.\n")


# -- parser --------------------------------------------------------------------------------------------


def _connection_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"REST gateway URL (env {URL_ENV}; default {DEFAULT_URL})",
    )
    group.add_argument(
        "--token-file", metavar="PATH", help=f"read the session token from PATH instead of env {TOKEN_ENV}"
    )
    group.add_argument("--user", default="me", help='whose secrets: "me" (default), your UUID or your username')
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS", help="per-request timeout")
    return flags


def _field_flags(parser: argparse.ArgumentParser, create: bool) -> None:
    keep = "" if create else ' (omit to keep; "" clears)'
    parser.add_argument("--description", help="free text" + keep)
    parser.add_argument("--env-name", help="inject as this environment variable" + keep)
    parser.add_argument("--file-path", help="inject as this file, starting with ~/ or /" + keep)
    source = parser.add_argument_group("value (exactly one; taken byte for byte, a trailing newline included)")
    one = source.add_mutually_exclusive_group()
    one.add_argument("--value-file", metavar="PATH", help="read the value from PATH")
    one.add_argument("--value-stdin", action="store_true", help="read the value from standard input")
    prompt_default = " (the default for create in a terminal)" if create else ""
    one.add_argument("--value-prompt", action="store_true", help="prompt without echo" + prompt_default)
    one.add_argument("--value", help="the value itself (lands in shell history: prefer the options above)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usersecrets", description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    secrets = commands.add_parser(
        "secrets",
        help="list, read and change your secrets over the REST API",
        description=f"Your secrets over the REST API, with the token from ${TOKEN_ENV} or --token-file.",
    )
    actions = secrets.add_subparsers(dest="action", required=True, metavar="ACTION")
    connection = _connection_flags()

    def action(name: str, text: str, run: Callable[..., object], takes_name: bool) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text, description=text, parents=[connection])
        if takes_name:
            sub.add_argument("name", metavar="NAME", help="the secret's name")
        sub.set_defaults(run=run)
        return sub

    listing = action("list", "List your secrets as a table (NAME, ENV, FILE, UPDATED).", cmd_list, False)
    listing.add_argument("--json", action="store_true", help="print a JSON array instead")
    get = action("get", "Show one secret's metadata (never its value).", cmd_get, True)
    get.add_argument("--json", action="store_true", help="print JSON instead")
    create = action("create", "Create a secret.", cmd_create, True)
    _field_flags(create, create=True)
    create.add_argument("--json", action="store_true", help="print the created secret as JSON")
    update = action("update", "Change a secret's value or fields; the name cannot change.", cmd_update, True)
    _field_flags(update, create=False)
    update.add_argument("--json", action="store_true", help="print the updated secret as JSON")
    action("delete", "Delete a secret.", cmd_delete, True)
    add_admin_parser(commands)
    return parser


def run_secrets(args: argparse.Namespace) -> int:
    try:
        token = read_token(args)
        with Client(args.url, token, timeout=args.timeout) as client:
            result = args.run(client, args)
        _emit(sys.stdout, result, getattr(args, "json", False))  # type: ignore[arg-type]
    except UsageError as exc:
        sys.stderr.write(f"usersecrets: error: {exc}\n")
        return EXIT_USAGE
    except errors.UserSecretsError as exc:
        report(exc, sys.stderr, args.url)
        return exit_code_for(exc)
    except ValueError as exc:  # a malformed --url or token, found by the client before any I/O
        sys.stderr.write(f"usersecrets: error: {exc}\n")
        return EXIT_USAGE
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "admin":
            return asyncio.run(run_admin(args))
        return run_secrets(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (`| head`) went away; say nothing more on a closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OTHER


if __name__ == "__main__":
    sys.exit(main())
