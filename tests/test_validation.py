"""Unit tests of server/validation.py: the field rules of CONTRACT.md section 2, without gRPC."""

from __future__ import annotations

import pytest

from tests.support.grpc_helpers import CONTRACT_RESERVED
from usersecrets.server import validation
from usersecrets.server.errors import FieldViolation

NAME_REQUIRED = FieldViolation("name", "name is required")
NAME_SPACE = FieldViolation("name", "name must not have leading or trailing whitespace")
NAME_CHARS = FieldViolation("name", "name must not contain '/', '?' or '#'")
NAME_LONG = FieldViolation("name", "name must not exceed 256 bytes")
VALUE_REQUIRED = FieldViolation("value", "value is required")
VALUE_NUL = FieldViolation("value", "value must not contain null bytes")
VALUE_LONG = FieldViolation("value", "value must not exceed 24576 bytes")
ENV_START = FieldViolation(
    "env_name", "env_name must start with a letter or underscore and contain only letters, digits and underscores"
)
ENV_LONG = FieldViolation("env_name", "env_name must not exceed 256 bytes")
ENV_CODER = FieldViolation("env_name", "env_name must not be CODER or start with CODER_: it is reserved")
ENV_PREFIX = FieldViolation("env_name", "env_name must not start with GIT_, LC_, LD_ or DYLD_: it is reserved")
FILE_START = FieldViolation("file_path", "file_path must start with ~/ or /")
FILE_NUL = FieldViolation("file_path", "file_path must not contain null bytes")
FILE_LONG = FieldViolation("file_path", "file_path must not exceed 4096 bytes")
DESC_LONG = FieldViolation("description", "description must not exceed 4096 bytes")


def reserved(upper: str) -> FieldViolation:
    return FieldViolation("env_name", f"env_name {upper} is reserved")


def test_reserved_list_is_the_contracts() -> None:
    assert set(CONTRACT_RESERVED) == validation.RESERVED_ENV_NAMES
    assert len(CONTRACT_RESERVED) == len(validation.RESERVED_ENV_NAMES)
    assert validation.RESERVED_ENV_PREFIXES == ("GIT_", "LC_", "LD_", "DYLD_")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("ok", [], id="plain"),
        pytest.param("with inner space %20", [], id="inner-space-and-percent"),
        pytest.param("a" * 256, [], id="256-ascii"),
        pytest.param("é" * 128, [], id="256-bytes-2-byte-chars"),
        pytest.param("€" * 85 + "a", [], id="256-bytes-3-byte-chars"),
        pytest.param("😀" * 64, [], id="256-bytes-4-byte-chars"),
        pytest.param("", [NAME_REQUIRED], id="empty"),
        pytest.param(" \t\n", [NAME_REQUIRED], id="blank"),
        pytest.param(" x", [NAME_SPACE], id="leading-space"),
        pytest.param("x\t", [NAME_SPACE], id="trailing-tab"),
        pytest.param("x\u00a0", [NAME_SPACE], id="trailing-nbsp"),
        pytest.param("a/b", [NAME_CHARS], id="slash"),
        pytest.param("a?b", [NAME_CHARS], id="question"),
        pytest.param("a#b", [NAME_CHARS], id="hash"),
        pytest.param("a" * 257, [NAME_LONG], id="257-ascii"),
        pytest.param("é" * 128 + "a", [NAME_LONG], id="257-bytes-2-byte-chars"),
        pytest.param("😀" * 64 + "a", [NAME_LONG], id="257-bytes-4-byte-chars"),
        pytest.param("é" * 200, [NAME_LONG], id="200-chars-400-bytes"),
        pytest.param(" " + "/" * 300, [NAME_SPACE, NAME_CHARS, NAME_LONG], id="three-at-once"),
    ],
)
def test_name(name: str, expected: list[FieldViolation]) -> None:
    assert validation.name_violations(name) == expected


@pytest.mark.parametrize(
    ("value", "required", "expected"),
    [
        pytest.param("v", True, [], id="plain"),
        pytest.param("a" * 24576, True, [], id="24576-ascii"),
        pytest.param("é" * 12288, True, [], id="24576-bytes-multibyte"),
        pytest.param("", True, [VALUE_REQUIRED], id="empty-on-create"),
        pytest.param("", False, [], id="empty-on-update"),
        pytest.param("a\x00b", True, [VALUE_NUL], id="nul"),
        pytest.param("a" * 24577, True, [VALUE_LONG], id="24577-ascii"),
        pytest.param("é" * 12288 + "a", False, [VALUE_LONG], id="24577-bytes-multibyte"),
        pytest.param("\x00" * 24577, True, [VALUE_NUL, VALUE_LONG], id="nul-and-long"),
    ],
)
def test_value(value: str, required: bool, expected: list[FieldViolation]) -> None:
    assert validation.value_violations(value, required=required) == expected


@pytest.mark.parametrize(
    ("env_name", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param("_", [], id="underscore"),
        pytest.param("a", [], id="one-letter"),
        pytest.param("GH_TOKEN", [], id="upper"),
        pytest.param("gh_token_2", [], id="lower-with-digit"),
        pytest.param("A" * 256, [], id="256-bytes"),
        pytest.param("CODERX", [], id="coder-without-underscore"),
        pytest.param("GIT", [], id="git-without-underscore"),
        pytest.param("MY_PATH", [], id="reserved-as-suffix"),
        pytest.param("PATHX", [], id="reserved-as-prefix"),
        pytest.param("_PATH", [], id="reserved-after-underscore"),
        pytest.param("1ABC", [ENV_START], id="leading-digit"),
        pytest.param("A-B", [ENV_START], id="hyphen"),
        pytest.param("A B", [ENV_START], id="space"),
        pytest.param("É", [ENV_START], id="non-ascii-letter"),
        pytest.param("A\n", [ENV_START], id="trailing-newline"),
        pytest.param("A" * 257, [ENV_LONG], id="257-bytes"),
        pytest.param("CODER", [ENV_CODER], id="CODER"),
        pytest.param("coder", [ENV_CODER], id="coder-lower"),
        pytest.param("CODER_", [ENV_CODER], id="CODER_"),
        pytest.param("Coder_Agent_Token", [ENV_CODER], id="coder-prefix-mixed-case"),
        pytest.param("GIT_DIR", [ENV_PREFIX], id="GIT_"),
        pytest.param("git_dir", [ENV_PREFIX], id="git_-lower"),
        pytest.param("LC_ALL", [ENV_PREFIX], id="LC_"),
        pytest.param("LD_PRELOAD", [ENV_PREFIX], id="LD_"),
        pytest.param("dyld_insert_libraries", [ENV_PREFIX], id="DYLD_-lower"),
        pytest.param("GIT_-X", [ENV_START, ENV_PREFIX], id="bad-chars-and-reserved"),
        pytest.param("CODER_" + "A" * 251, [ENV_LONG, ENV_CODER], id="long-and-coder"),
    ],
)
def test_env_name(env_name: str, expected: list[FieldViolation]) -> None:
    assert validation.env_name_violations(env_name) == expected


@pytest.mark.parametrize("upper", CONTRACT_RESERVED)
@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.title], ids=["upper", "lower", "title"])
def test_every_reserved_env_name(upper: str, spelling) -> None:  # type: ignore[no-untyped-def]
    assert validation.env_name_violations(spelling(upper)) == [reserved(upper)]


@pytest.mark.parametrize(
    ("file_path", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param("~/x", [], id="home"),
        pytest.param("/etc/x", [], id="absolute"),
        pytest.param("/", [], id="root"),
        pytest.param("/" + "a" * 4095, [], id="4096-bytes"),
        pytest.param("/" + "é" * 2047 + "a", [], id="4096-bytes-multibyte"),
        pytest.param("x", [FILE_START], id="relative"),
        pytest.param("~", [FILE_START], id="tilde-alone"),
        pytest.param("~x/y", [FILE_START], id="tilde-user"),
        pytest.param("./x", [FILE_START], id="dot-slash"),
        pytest.param(" /x", [FILE_START], id="leading-space"),
        pytest.param("/a\x00b", [FILE_NUL], id="nul"),
        pytest.param("/" + "a" * 4096, [FILE_LONG], id="4097-bytes"),
        pytest.param("/" + "é" * 2048, [FILE_LONG], id="4097-bytes-multibyte"),
        pytest.param("x\x00" + "a" * 4096, [FILE_START, FILE_NUL, FILE_LONG], id="three-at-once"),
    ],
)
def test_file_path(file_path: str, expected: list[FieldViolation]) -> None:
    assert validation.file_path_violations(file_path) == expected


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param("d" * 4096, [], id="4096-bytes"),
        pytest.param("é" * 2048, [], id="4096-bytes-multibyte"),
        pytest.param("d" * 4097, [DESC_LONG], id="4097-bytes"),
        pytest.param("é" * 2048 + "d", [DESC_LONG], id="4097-bytes-multibyte"),
    ],
)
def test_description(description: str, expected: list[FieldViolation]) -> None:
    assert validation.description_violations(description) == expected


def test_create_collects_every_field() -> None:
    found = validation.create_violations(name="", value="", description="d" * 4097, env_name="1x", file_path="x")
    assert sorted(found, key=lambda v: v.field) == sorted(
        [NAME_REQUIRED, VALUE_REQUIRED, DESC_LONG, ENV_START, FILE_START], key=lambda v: v.field
    )


def test_create_valid() -> None:
    found = validation.create_violations(name="n", value="v", description="", env_name="", file_path="")
    assert found == []


def test_update_checks_only_present_fields() -> None:
    assert validation.update_violations(value=None, description=None, env_name=None, file_path=None) == []
    # "" is present and legal for every field, value included.
    assert validation.update_violations(value="", description="", env_name="", file_path="") == []


def test_update_collects_every_present_field() -> None:
    found = validation.update_violations(value="\x00", description="d" * 4097, env_name="path", file_path="rel")
    assert sorted(found, key=lambda v: v.field) == sorted(
        [VALUE_NUL, DESC_LONG, reserved("PATH"), FILE_START], key=lambda v: v.field
    )
