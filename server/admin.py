"""`usersecrets admin ...`: operator commands that talk to Redis directly.

Output is machine-readable (one JSON object, or the token alone); errors are one line on stderr with
exit status 1, usage errors exit 2 (argparse). Nothing printed ever holds a secret value, and a token is
printed only by create-token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from usersecrets.server import errors
from usersecrets.server.config import ServerConfig
from usersecrets.server.crypto import Barrier, associated_data, key_ring_from_config
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import StoredSecret, User
from usersecrets.server.redis_client import connect
from usersecrets.server.store import SecretStore

DEFAULT_REDIS_URL = ServerConfig().redis_url
DEFAULT_LIFETIME = "30d"
ROTATE_ATTEMPTS = 5  # compare-and-set retries per secret before it counts as failed
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_RE = re.compile(r"([0-9]{1,9})([dhms])")
_TOKEN_ID_RE = re.compile(r"[a-zA-Z0-9]{10}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

GLOBAL_FLAGS = {
    "redis_url": ("--redis-url", "USERSECRETS_REDIS_URL", f"Redis URL (default {DEFAULT_REDIS_URL})"),
    "encryption_keys": ("--encryption-keys", "USERSECRETS_ENCRYPTION_KEYS", "comma-separated base64 keys"),
    "key_file": ("--key-file", "USERSECRETS_KEY_FILE", "development key file"),
    "redis_mode": ("--redis-mode", "USERSECRETS_REDIS_MODE", "cluster: treat a redis:// URL as a cluster seed"),
}


class AdminError(Exception):
    """A failure to report on one stderr line, exit status 1."""


def parse_duration(text: str) -> float:
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError("expected a positive duration like 30d, 12h, 90m or 3600s")
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_token_id(text: str) -> str:
    # A full token is accepted for convenience; only its id part is used (and ever printed).
    token_id = text.strip().split("-", 1)[0]
    if not _TOKEN_ID_RE.fullmatch(token_id):
        raise argparse.ArgumentTypeError("expected a token id (10 letters or digits) or a full token")
    return token_id


def _add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    for dest, (flag, env, text) in GLOBAL_FLAGS.items():
        parser.add_argument(flag, dest=dest, default=default, help=f"{text}; env {env}")


def _configure(parser: argparse.ArgumentParser) -> None:
    _add_global_flags(parser, None)
    commands = parser.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        # SUPPRESS keeps a flag given before the command from being reset by the command's default.
        _add_global_flags(sub, argparse.SUPPRESS)
        return sub

    create_user = command("create-user", "Create a user; prints it as one JSON object.")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--role", dest="roles", action="append", default=[], metavar="ROLE")

    create_token = command("create-token", "Create a session token; prints the token alone.")
    create_token.add_argument("--user", required=True, metavar="NAME_OR_ID")
    create_token.add_argument(
        "--lifetime", type=parse_duration, default=parse_duration(DEFAULT_LIFETIME), metavar="DURATION"
    )

    revoke = command("revoke-token", "Revoke a session token.")
    revoke.add_argument("--token-id", required=True, type=parse_token_id, metavar="ID")

    command("rotate-keys", "Re-encrypt every stored value under the active key.")


def add_admin_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _configure(subparsers.add_parser("admin", help="operator commands", description=__doc__))


def _setting(args: argparse.Namespace, dest: str) -> str:
    value = getattr(args, dest, None)
    if value is None:
        value = os.environ.get(GLOBAL_FLAGS[dest][1], "")
    return value


def _rfc3339(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user_json(user: User) -> str:
    return json.dumps(
        {
            "id": user.id,
            "username": user.username,
            "roles": list(user.roles),
            "created_at": _rfc3339(user.created_at_us),
        }
    )


async def _find_user(ids: IdentityStore, name_or_id: str) -> User:
    try:
        user = await ids.user_by_id(str(uuid.UUID(name_or_id)))
    except ValueError:
        user = await ids.user_by_name(name_or_id)
    if user is None:
        raise AdminError("no such user")
    return user


async def rotate_keys(store: SecretStore, barrier: Barrier) -> tuple[dict[str, int], list[str]]:
    """Returns the summary and one line per failed secret (user id and name, never the value)."""
    summary = {"rotated": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    for user_id in await store.user_ids():
        for secret in await store.list(user_id):
            outcome, reason = await _rotate_one(store, barrier, user_id, secret)
            if outcome:
                summary[outcome] += 1
            if outcome == "failed":
                failures.append(f"user {user_id} secret {json.dumps(secret.name)}: {reason}")
    return summary, failures


async def _rotate_one(
    store: SecretStore, barrier: Barrier, user_id: str, secret: StoredSecret
) -> tuple[str | None, str]:
    active = barrier.ring.active_id
    for _ in range(ROTATE_ATTEMPTS):
        if secret.key_id == active:
            return "skipped", ""
        aad = associated_data(user_id, secret.id)
        try:
            plaintext = barrier.open(secret.ciphertext, aad)
        except errors.DecryptionFailed as exc:
            return "failed", exc.detail
        sealed = barrier.seal(plaintext, aad)
        if await store.replace_ciphertext(user_id, secret.name, secret.id, secret.ciphertext, sealed, active):
            return "rotated", ""
        # Changed under us: look again and work on what is there now.
        try:
            secret = await store.get(user_id, secret.name)
        except errors.NotFound:
            return None, ""
    return "failed", f"still changing after {ROTATE_ATTEMPTS} attempts"


def _barrier(args: argparse.Namespace) -> Barrier:
    config = ServerConfig(encryption_keys=_setting(args, "encryption_keys"), key_file=_setting(args, "key_file"))
    # Rotation must never mint a fresh development key: nothing stored could open under it.
    if not config.encryption_keys.strip() and config.key_file and not os.path.exists(config.key_file):
        raise AdminError(f"key file {config.key_file} does not exist")
    return Barrier(key_ring_from_config(config))


async def _run(args: argparse.Namespace, client: aioredis.Redis) -> int:
    command = args.admin_command
    if command == "create-user":
        user = await IdentityStore(client).create_user(args.username, args.roles)
        print(user_json(user))
    elif command == "create-token":
        ids = IdentityStore(client)
        user = await _find_user(ids, args.user)
        _, token = await ids.create_token(user.id, args.lifetime)
        print(token)
    elif command == "revoke-token":
        if not await IdentityStore(client).revoke_token(args.token_id):
            raise AdminError(f"no such token {args.token_id}")
        print(json.dumps({"token_id": args.token_id, "revoked": True}))
    elif command == "rotate-keys":
        summary, failures = await rotate_keys(SecretStore(client), _barrier(args))
        for line in failures:
            print(f"failed: {line}", file=sys.stderr)
        print(json.dumps(summary))
        return 1 if failures else 0
    else:
        raise AssertionError(f"unhandled admin command {command}")
    return 0


async def run_admin(args: argparse.Namespace) -> int:
    try:
        client = connect(
            _setting(args, "redis_url") or DEFAULT_REDIS_URL,
            timeout=ServerConfig().redis_timeout_seconds,
            mode=_setting(args, "redis_mode"),
        )
    except ValueError as exc:  # redis-py names the accepted schemes, not the URL
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return await _run(args, client)
    except errors.StorageUnavailable as exc:
        # Only the redis-py error class is named: its text could carry the URL, and the URL a password.
        print(f"error: {exc.message} ({type(exc.__cause__).__name__})", file=sys.stderr)
    except (AdminError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        await client.aclose()  # every client from connect() closes its pool (or cluster nodes) here
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usersecrets admin", description=__doc__)
    _configure(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run_admin(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
