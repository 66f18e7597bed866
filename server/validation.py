"""Field rules of CONTRACT.md section 2. Every failure of a request is collected, then reported together."""

from __future__ import annotations

import re

from usersecrets.server import limits
from usersecrets.server.errors import FieldViolation

_ENV_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NAME_FORBIDDEN = ("/", "?", "#")

RESERVED_ENV_NAMES = frozenset(
    """PATH HOME SHELL USER LOGNAME PWD OLDPWD LANG TERM IFS CDPATH ENV BASH_ENV TMPDIR TMP TEMP HOSTNAME
    SSH_AUTH_SOCK SSH_CLIENT SSH_CONNECTION SSH_TTY EDITOR VISUAL PAGER VSCODE_PROXY_URI
    CS_DISABLE_GETTING_STARTED_OVERRIDE XDG_RUNTIME_DIR XDG_CONFIG_HOME XDG_DATA_HOME XDG_CACHE_HOME
    XDG_STATE_HOME""".split()  # noqa: SIM905 - the contract's list, kept as written
)
# Prefixes whose variables steer the workspace's tools, loader or locale.
RESERVED_ENV_PREFIXES = ("GIT_", "LC_", "LD_", "DYLD_")


def _too_long(field: str, text: str, limit: int) -> FieldViolation | None:
    if len(text.encode()) > limit:
        return FieldViolation(field, f"{field} must not exceed {limit} bytes")
    return None


def name_violations(name: str) -> list[FieldViolation]:
    if not name or not name.strip():
        return [FieldViolation("name", "name is required")]
    found: list[FieldViolation] = []
    if name != name.strip():
        found.append(FieldViolation("name", "name must not have leading or trailing whitespace"))
    if any(ch in name for ch in _NAME_FORBIDDEN):
        found.append(FieldViolation("name", "name must not contain '/', '?' or '#'"))
    if v := _too_long("name", name, limits.MAX_NAME_BYTES):
        found.append(v)
    return found


def value_violations(value: str, *, required: bool) -> list[FieldViolation]:
    if required and not value:
        return [FieldViolation("value", "value is required")]
    found: list[FieldViolation] = []
    if "\x00" in value:
        found.append(FieldViolation("value", "value must not contain null bytes"))
    if v := _too_long("value", value, limits.MAX_VALUE_BYTES):
        found.append(v)
    return found


def env_name_violations(env_name: str) -> list[FieldViolation]:
    if not env_name:
        return []
    found: list[FieldViolation] = []
    if not _ENV_NAME_RE.fullmatch(env_name):
        found.append(
            FieldViolation(
                "env_name",
                "env_name must start with a letter or underscore and contain only letters, digits and underscores",
            )
        )
    if v := _too_long("env_name", env_name, limits.MAX_ENV_NAME_BYTES):
        found.append(v)
    upper = env_name.upper()
    if upper == "CODER" or upper.startswith("CODER_"):
        found.append(FieldViolation("env_name", "env_name must not be CODER or start with CODER_: it is reserved"))
    elif upper in RESERVED_ENV_NAMES:
        found.append(FieldViolation("env_name", f"env_name {upper} is reserved"))
    elif upper.startswith(RESERVED_ENV_PREFIXES):
        found.append(FieldViolation("env_name", "env_name must not start with GIT_, LC_, LD_ or DYLD_: it is reserved"))
    return found


def file_path_violations(file_path: str) -> list[FieldViolation]:
    if not file_path:
        return []
    found: list[FieldViolation] = []
    if not (file_path.startswith("~/") or file_path.startswith("/")):
        found.append(FieldViolation("file_path", "file_path must start with ~/ or /"))
    if "\x00" in file_path:
        found.append(FieldViolation("file_path", "file_path must not contain null bytes"))
    if v := _too_long("file_path", file_path, limits.MAX_FILE_PATH_BYTES):
        found.append(v)
    return found


def description_violations(description: str) -> list[FieldViolation]:
    v = _too_long("description", description, limits.MAX_DESCRIPTION_BYTES)
    return [v] if v else []


def create_violations(
    *, name: str, value: str, description: str, env_name: str, file_path: str
) -> list[FieldViolation]:
    return [
        *name_violations(name),
        *value_violations(value, required=True),
        *description_violations(description),
        *env_name_violations(env_name),
        *file_path_violations(file_path),
    ]


def update_violations(
    *, value: str | None, description: str | None, env_name: str | None, file_path: str | None
) -> list[FieldViolation]:
    """Absent fields (None) are left alone and not checked; the name is the path's and is never changed."""
    found: list[FieldViolation] = []
    if value is not None:
        found += value_violations(value, required=False)
    if description is not None:
        found += description_violations(description)
    if env_name is not None:
        found += env_name_violations(env_name)
    if file_path is not None:
        found += file_path_violations(file_path)
    return found
