"""Every row of CONTRACT.md section 2's validation table over real gRPC, boundaries exact, failures collected.

Each failing row asserts INVALID_ARGUMENT, "Validation failed.", the exact BadRequest field violations, that
every description holds the contract's words for its field, and that nothing was stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.grpc_helpers import CONTRACT_RESERVED, assert_absent, assert_validation, fails, md, user_state
from tests.support.stack import ServerStack
from usersecrets.v1 import usersecrets_pb2 as pb

CANARY = "canary-7f3a-value"

# Words the contract promises in each field's detail text (section 2, "detail text (contains)").
CONTRACT_WORDS = {
    "name": ("required", "whitespace", "must not contain", "must not exceed"),
    "value": ("required", "null bytes", "must not exceed"),
    "env_name": ("must start with a letter or underscore", "reserved", "CODER_", "must not exceed"),
    "file_path": ("must start with ~/ or /", "null bytes", "must not exceed"),
    "description": ("must not exceed",),
}

NAME_REQUIRED = ("name", "name is required")
NAME_SPACE = ("name", "name must not have leading or trailing whitespace")
NAME_CHARS = ("name", "name must not contain '/', '?' or '#'")
NAME_LONG = ("name", "name must not exceed 256 bytes")
VALUE_REQUIRED = ("value", "value is required")
VALUE_NUL = ("value", "value must not contain null bytes")
VALUE_LONG = ("value", "value must not exceed 24576 bytes")
ENV_START = (
    "env_name",
    "env_name must start with a letter or underscore and contain only letters, digits and underscores",
)
ENV_LONG = ("env_name", "env_name must not exceed 256 bytes")
ENV_CODER = ("env_name", "env_name must not be CODER or start with CODER_: it is reserved")
ENV_PREFIX = ("env_name", "env_name must not start with GIT_, LC_, LD_ or DYLD_: it is reserved")
FILE_START = ("file_path", "file_path must start with ~/ or /")
FILE_NUL = ("file_path", "file_path must not contain null bytes")
FILE_LONG = ("file_path", "file_path must not exceed 4096 bytes")
DESC_LONG = ("description", "description must not exceed 4096 bytes")


def reserved(upper: str) -> tuple[str, str]:
    return ("env_name", f"env_name {upper} is reserved")


def assert_contract_words(violations: list[tuple[str, str]]) -> None:
    for field, description in violations:
        words = CONTRACT_WORDS[field]
        assert any(w in description for w in words), f"{field}: {description!r} holds none of {words}"


def create_request(**fields: Any) -> pb.CreateUserSecretRequest:
    base: dict[str, Any] = {"user": "me", "name": "ok", "value": CANARY}
    return pb.CreateUserSecretRequest(**(base | fields))


INVALID_CREATES = [
    pytest.param({"name": ""}, [NAME_REQUIRED], id="name-empty"),
    pytest.param({"name": "  \t "}, [NAME_REQUIRED], id="name-blank"),
    pytest.param({"name": " x"}, [NAME_SPACE], id="name-leading-space"),
    pytest.param({"name": "x\t"}, [NAME_SPACE], id="name-trailing-tab"),
    pytest.param({"name": "x\n"}, [NAME_SPACE], id="name-trailing-newline"),
    pytest.param({"name": "a/b"}, [NAME_CHARS], id="name-slash"),
    pytest.param({"name": "a?b"}, [NAME_CHARS], id="name-question-mark"),
    pytest.param({"name": "a#b"}, [NAME_CHARS], id="name-hash"),
    pytest.param({"name": "a" * 257}, [NAME_LONG], id="name-257-bytes-ascii"),
    pytest.param({"name": "é" * 128 + "a"}, [NAME_LONG], id="name-257-bytes-2-byte-utf8"),
    pytest.param({"name": "😀" * 64 + "a"}, [NAME_LONG], id="name-257-bytes-4-byte-utf8"),
    pytest.param({"name": "€" * 100}, [NAME_LONG], id="name-100-chars-300-bytes"),
    pytest.param({"name": " " + "#" * 300}, [NAME_SPACE, NAME_CHARS, NAME_LONG], id="name-three-rules"),
    pytest.param({"value": ""}, [VALUE_REQUIRED], id="value-missing"),
    pytest.param({"value": CANARY + "\x00"}, [VALUE_NUL], id="value-nul"),
    pytest.param({"value": "a" * 24577}, [VALUE_LONG], id="value-24577-bytes-ascii"),
    pytest.param({"value": "é" * 12288 + "a"}, [VALUE_LONG], id="value-24577-bytes-utf8"),
    pytest.param({"value": "\x00" * 24577}, [VALUE_NUL, VALUE_LONG], id="value-nul-and-long"),
    pytest.param({"env_name": "1ABC"}, [ENV_START], id="env-leading-digit"),
    pytest.param({"env_name": "A-B"}, [ENV_START], id="env-hyphen"),
    pytest.param({"env_name": "É"}, [ENV_START], id="env-non-ascii"),
    pytest.param({"env_name": "A" * 257}, [ENV_LONG], id="env-257-bytes"),
    pytest.param({"env_name": "CODER"}, [ENV_CODER], id="env-CODER"),
    pytest.param({"env_name": "coder"}, [ENV_CODER], id="env-coder-lower"),
    pytest.param({"env_name": "CODER_"}, [ENV_CODER], id="env-CODER_"),
    pytest.param({"env_name": "Coder_Agent_Token"}, [ENV_CODER], id="env-CODER_x-mixed-case"),
    pytest.param({"env_name": "GIT_DIR"}, [ENV_PREFIX], id="env-GIT_"),
    pytest.param({"env_name": "git_author"}, [ENV_PREFIX], id="env-git_-lower"),
    pytest.param({"env_name": "LC_ALL"}, [ENV_PREFIX], id="env-LC_"),
    pytest.param({"env_name": "ld_preload"}, [ENV_PREFIX], id="env-LD_-lower"),
    pytest.param({"env_name": "DYLD_INSERT_LIBRARIES"}, [ENV_PREFIX], id="env-DYLD_"),
    pytest.param({"env_name": "GIT_-X"}, [ENV_START, ENV_PREFIX], id="env-bad-chars-and-reserved"),
    pytest.param({"file_path": "rel/x"}, [FILE_START], id="file-relative"),
    pytest.param({"file_path": "~"}, [FILE_START], id="file-tilde-alone"),
    pytest.param({"file_path": "~x/y"}, [FILE_START], id="file-tilde-user"),
    pytest.param({"file_path": "/a\x00b"}, [FILE_NUL], id="file-nul"),
    pytest.param({"file_path": "/" + "a" * 4096}, [FILE_LONG], id="file-4097-bytes"),
    pytest.param({"file_path": "/" + "é" * 2048}, [FILE_LONG], id="file-4097-bytes-utf8"),
    pytest.param({"file_path": "x\x00" + "a" * 4096}, [FILE_START, FILE_NUL, FILE_LONG], id="file-three-rules"),
    pytest.param({"description": "d" * 4097}, [DESC_LONG], id="description-4097-bytes"),
    pytest.param({"description": "é" * 2048 + "d"}, [DESC_LONG], id="description-4097-bytes-utf8"),
    pytest.param(
        {"name": "", "value": "", "description": "d" * 4097, "env_name": "1x", "file_path": "x"},
        [NAME_REQUIRED, VALUE_REQUIRED, DESC_LONG, ENV_START, FILE_START],
        id="every-field-at-once",
    ),
    pytest.param(
        {"name": "a/b ", "value": "\x00", "env_name": "path", "file_path": "/\x00"},
        [NAME_SPACE, NAME_CHARS, VALUE_NUL, reserved("PATH"), FILE_NUL],
        id="several-fields-several-rules",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), INVALID_CREATES)
async def test_create_rejects(
    server_stack: ServerStack, fields: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        failure = await fails(stub.CreateUserSecret(create_request(**fields), metadata=md(token)))
    assert_validation(failure, expected)
    assert_contract_words(failure.violations)
    assert failure.detail is None
    assert_absent(failure.raw, CANARY, token)
    assert await user_state(server_stack.redis, user.id) == {}


@pytest.mark.parametrize("upper", CONTRACT_RESERVED)
async def test_create_rejects_every_reserved_env_name(server_stack: ServerStack, upper: str) -> None:
    _, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        for spelling in (upper, upper.lower(), upper.title()):
            failure = await fails(stub.CreateUserSecret(create_request(env_name=spelling), metadata=md(token)))
            assert_validation(failure, [reserved(upper)])
            assert_contract_words(failure.violations)
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert list(listed.secrets) == []


VALID_CREATES = [
    pytest.param({"name": "a" * 256}, id="name-256-bytes-ascii"),
    pytest.param({"name": "é" * 128}, id="name-256-bytes-2-byte-utf8"),
    pytest.param({"name": "€" * 85 + "a"}, id="name-256-bytes-3-byte-utf8"),
    pytest.param({"name": "😀" * 64}, id="name-256-bytes-4-byte-utf8"),
    pytest.param({"name": "my key %20 (prod)"}, id="name-inner-space-percent"),
    pytest.param({"value": "v" * 24576}, id="value-24576-bytes-ascii"),
    pytest.param({"value": "é" * 12288}, id="value-24576-bytes-utf8"),
    pytest.param({"env_name": "A" * 256}, id="env-256-bytes"),
    pytest.param({"env_name": "_"}, id="env-underscore"),
    pytest.param({"env_name": "gh_token_2"}, id="env-lower-with-digit"),
    pytest.param({"env_name": "CODERX"}, id="env-CODER-without-underscore"),
    pytest.param({"env_name": "GIT"}, id="env-GIT-without-underscore"),
    pytest.param({"env_name": "MY_PATH"}, id="env-reserved-as-suffix"),
    pytest.param({"env_name": "PATHS"}, id="env-reserved-as-prefix"),
    pytest.param({"file_path": "~/.config/x"}, id="file-home"),
    pytest.param({"file_path": "/"}, id="file-root"),
    pytest.param({"file_path": "/" + "a" * 4095}, id="file-4096-bytes"),
    pytest.param({"file_path": "/" + "é" * 2047 + "a"}, id="file-4096-bytes-utf8"),
    pytest.param({"description": "d" * 4096}, id="description-4096-bytes"),
    pytest.param({"description": "é" * 2048}, id="description-4096-bytes-utf8"),
]


@pytest.mark.parametrize("fields", VALID_CREATES)
async def test_create_accepts_boundary(server_stack: ServerStack, fields: dict[str, Any]) -> None:
    _, token = await server_stack.user("alice")
    request = create_request(**fields)
    async with server_stack.stub() as stub:
        created = await stub.CreateUserSecret(request, metadata=md(token))
        got = await stub.GetUserSecret(pb.GetUserSecretRequest(user="me", name=request.name), metadata=md(token))
    expected = (request.name, request.description, request.env_name, request.file_path)
    assert (created.name, created.description, created.env_name, created.file_path) == expected
    assert got == created


INVALID_UPDATES = [
    pytest.param({"value": "a\x00"}, [VALUE_NUL], id="value-nul"),
    pytest.param({"value": "a" * 24577}, [VALUE_LONG], id="value-24577-bytes"),
    pytest.param({"value": "é" * 12288 + "a"}, [VALUE_LONG], id="value-24577-bytes-utf8"),
    pytest.param({"description": "é" * 2048 + "d"}, [DESC_LONG], id="description-4097-bytes"),
    pytest.param({"env_name": "9"}, [ENV_START], id="env-leading-digit"),
    pytest.param({"env_name": "A" * 257}, [ENV_LONG], id="env-257-bytes"),
    pytest.param({"env_name": "path"}, [reserved("PATH")], id="env-reserved-lower"),
    pytest.param({"env_name": "coder_url"}, [ENV_CODER], id="env-CODER_"),
    pytest.param({"env_name": "LC_CTYPE"}, [ENV_PREFIX], id="env-LC_"),
    pytest.param({"file_path": "x"}, [FILE_START], id="file-relative"),
    pytest.param({"file_path": "/" + "a" * 4096}, [FILE_LONG], id="file-4097-bytes"),
    pytest.param(
        {"value": "\x00", "description": "d" * 4097, "env_name": "Home", "file_path": "rel"},
        [VALUE_NUL, DESC_LONG, reserved("HOME"), FILE_START],
        id="every-field-at-once",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), INVALID_UPDATES)
async def test_update_rejects(
    server_stack: ServerStack, fields: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    user, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        await stub.CreateUserSecret(create_request(name="s", env_name="OK_ENV"), metadata=md(token))
        before = await user_state(server_stack.redis, user.id)
        request = pb.UpdateUserSecretRequest(user="me", name="s", **fields)
        failure = await fails(stub.UpdateUserSecret(request, metadata=md(token)))
    assert_validation(failure, expected)
    assert_contract_words(failure.violations)
    assert await user_state(server_stack.redis, user.id) == before
