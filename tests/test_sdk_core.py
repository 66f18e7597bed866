"""The SDK's I/O-free core: URLs, headers, bodies, answers and the error mapping (no network needed)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from datetime import UTC, datetime

import aiohttp
import pytest

from usersecrets.sdk import client as async_module
from usersecrets.sdk import errors
from usersecrets.sdk import sync_client as sync_module
from usersecrets.sdk._core import ClientCore, encode_segment
from usersecrets.sdk.models import (
    CreateUserSecretRequest,
    UpdateUserSecretRequest,
    UserSecret,
    UserSecretValue,
    Validation,
)

SECRET_JSON = {
    "id": "497f6eca-6276-4993-bfeb-53cbbbba6f08",
    "name": "my key",
    "description": "d",
    "env_name": "MY_KEY",
    "file_path": "~/k",
    "created_at": "2026-01-02T03:04:05.123456Z",
    "updated_at": "2026-01-02T03:04:06.000001Z",
}


def core(**kwargs: object) -> ClientCore:
    return ClientCore("http://gw.test:8080/", "tokid-toksecret", environ={}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("plain", "plain"),
        ("with space", "with%20space"),
        ("100%", "100%25"),
        ("%20", "%2520"),
        ("a+b&c=d", "a%2Bb%26c%3Dd"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("slash/no", "slash%2Fno"),
        ("q?h#", "q%3Fh%23"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "..."),
        ("a.b-c_d~e", "a.b-c_d~e"),
    ],
    ids=lambda v: repr(v),
)
def test_encode_segment(name: str, want: str) -> None:
    assert encode_segment(name) == want, f"encode_segment({name!r}) = {encode_segment(name)!r}; want {want!r}"


@pytest.mark.parametrize(
    ("op", "args", "method", "path", "success"),
    [
        ("user_secrets", ("me",), "GET", "/api/v2/users/me/secrets", 200),
        ("user_secret_by_name", ("alice", "a b%"), "GET", "/api/v2/users/alice/secrets/a%20b%25", 200),
        ("delete_user_secret", ("me", "x"), "DELETE", "/api/v2/users/me/secrets/x", 204),
        (
            "update_user_secret",
            ("me", "x", UpdateUserSecretRequest(description="")),
            "PATCH",
            "/api/v2/users/me/secrets/x",
            200,
        ),
        (
            "create_user_secret",
            ("497f6eca-6276-4993-bfeb-53cbbbba6f08", CreateUserSecretRequest("n", "v")),
            "POST",
            "/api/v2/users/497f6eca-6276-4993-bfeb-53cbbbba6f08/secrets",
            201,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_calls(op: str, args: tuple[object, ...], method: str, path: str, success: int) -> None:
    call = getattr(core(), op)(*args)
    assert (call.method, call.path, call.success) == (method, path, success)
    assert call.headers["Coder-Session-Token"] == "tokid-toksecret"
    assert call.headers["Accept"] == "application/json"
    assert ("Content-Type" in call.headers) == (call.body is not None)


def test_base_path_is_kept() -> None:
    c = ClientCore("https://host.test/prefix/", "t-s", environ={})
    assert (c.scheme, c.host, c.port) == ("https", "host.test", 443)
    assert c.path("me", "n") == "/prefix/api/v2/users/me/secrets/n"


def test_settings_from_environment_and_no_token() -> None:
    c = ClientCore(environ={"USERSECRETS_URL": "http://10.0.0.1:9", "USERSECRETS_TOKEN": "a-b"})
    assert (c.url, c.host, c.port) == ("http://10.0.0.1:9", "10.0.0.1", 9)
    assert c.headers(False)["Coder-Session-Token"] == "a-b"
    bare = ClientCore(environ={})
    assert bare.url == "http://127.0.0.1:8080"
    assert "Coder-Session-Token" not in bare.headers(False)


@pytest.mark.parametrize(
    ("url", "token", "timeout"),
    [
        ("ftp://host", "a-b", 1.0),
        ("http://", "a-b", 1.0),
        ("http://h/?q=1", "a-b", 1.0),
        ("http://h", "a-b\r\nX-Evil: 1", 1.0),
        ("http://h", "a-b", 0.0),
    ],
)
def test_bad_settings_are_refused(url: str, token: str, timeout: float) -> None:
    with pytest.raises(ValueError) as caught:
        ClientCore(url, token, timeout=timeout, environ={})
    assert "X-Evil" not in str(caught.value)


@pytest.mark.parametrize(("user", "name"), [("", None), ("me", "")])
def test_empty_user_or_name_is_refused(user: str, name: str | None) -> None:
    with pytest.raises(ValueError):
        core().path(user, name)


def test_bodies() -> None:
    create = core().create_user_secret("me", CreateUserSecretRequest("n", "v\u00e9", env_name="E"))
    assert json.loads(create.body or b"") == {
        "name": "n",
        "value": "v\u00e9",
        "description": "",
        "env_name": "E",
        "file_path": "",
    }
    update = core().update_user_secret("me", "n", UpdateUserSecretRequest(value="", file_path="/x"))
    assert json.loads(update.body or b"") == {"value": "", "file_path": "/x"}
    assert UpdateUserSecretRequest().is_empty()


def test_values_and_tokens_stay_out_of_reprs() -> None:
    c = core()
    assert "toksecret" not in repr(c)
    assert "canary" not in repr(CreateUserSecretRequest("n", "canary"))
    assert "canary" not in repr(UpdateUserSecretRequest(value="canary"))
    secret = UserSecret.from_json(SECRET_JSON)
    assert "canary" not in repr(UserSecretValue(secret, "canary"))
    call = c.create_user_secret("me", CreateUserSecretRequest("n", "canary"))
    assert "canary" not in repr(call) and "toksecret" not in repr(call)


def test_finish_reads_success_answers() -> None:
    c = core()
    secret = c.finish(c.user_secret_by_name("me", "my key"), 200, {}, json.dumps(SECRET_JSON).encode())
    assert secret.created_at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert secret.to_json() == SECRET_JSON
    listed = c.finish(c.user_secrets("me"), 200, {}, json.dumps([SECRET_JSON, SECRET_JSON]).encode())
    assert listed == [secret, secret]
    assert c.finish(c.user_secrets("me"), 200, {}, b"[]") == []
    assert c.finish(c.delete_user_secret("me", "x"), 204, {}, b"") is None


@pytest.mark.parametrize("body", [b"<html>", b"{}", b'{"id": 5}', b"[1]"])
def test_finish_refuses_unreadable_success(body: bytes) -> None:
    c = core()
    call = c.user_secrets("me") if body == b"[1]" else c.user_secret_by_name("me", "x")
    with pytest.raises(errors.UserSecretsError) as caught:
        c.finish(call, 200, {}, body)
    assert type(caught.value) is errors.UserSecretsError
    assert caught.value.status == 200


VALIDATION_BODY = {
    "message": "Validation failed.",
    "validations": [{"field": "env_name", "detail": "env_name is reserved"}],
}

ERROR_CASES = [
    (400, VALIDATION_BODY, errors.ValidationError),
    (400, {"message": "User secrets limit reached.", "detail": "at most 50"}, errors.LimitReachedError),
    (400, {"message": "User secrets total value size limit reached."}, errors.LimitReachedError),
    (400, {"message": "At least one field must be provided."}, errors.BadRequestError),
    (400, {"message": '"user" must be an existing uuid or username.'}, errors.BadRequestError),
    (401, {"message": "You are signed out or your session has expired."}, errors.UnauthorizedError),
    (403, {"message": "Forbidden."}, errors.ForbiddenError),
    (404, {"message": "Resource not found or you do not have access to this resource"}, errors.NotFoundError),
    (405, {"message": "Method not allowed."}, errors.UserSecretsError),
    (
        409,
        {**VALIDATION_BODY, "validations": [{"field": "name", "detail": "name already in use"}]},
        errors.ConflictError,
    ),
    (413, {"message": "Request body too large."}, errors.PayloadTooLargeError),
    (429, {"message": "Too many requests."}, errors.RateLimitedError),
    (500, {"message": "Internal error."}, errors.ServerError),
    (501, {"message": "Not implemented."}, errors.ServerError),
    (503, {"message": "Unavailable."}, errors.ServiceUnavailableError),
    (504, {"message": "Deadline exceeded."}, errors.GatewayTimeoutError),
    (302, {"message": "Moved."}, errors.UserSecretsError),
]


@pytest.mark.parametrize(("status", "body", "cls"), ERROR_CASES, ids=lambda v: str(v) if isinstance(v, int) else None)
def test_error_mapping(status: int, body: dict[str, object], cls: type[errors.UserSecretsError]) -> None:
    c = core()
    with pytest.raises(errors.UserSecretsError) as caught:
        c.finish(c.user_secrets("me"), status, {"Retry-After": "3"}, json.dumps(body).encode())
    error = caught.value
    assert type(error) is cls, f"HTTP {status} {body['message']!r} raised {type(error).__name__}; want {cls.__name__}"
    assert (error.status, error.message, error.detail) == (status, body["message"], body.get("detail", ""))
    want_validations = tuple(Validation(v["field"], v["detail"]) for v in body.get("validations", []))  # type: ignore[attr-defined]
    assert error.validations == want_validations
    if cls is errors.RateLimitedError:
        assert error.retry_after == 3.0  # type: ignore[attr-defined]


def test_error_body_that_is_not_coder_shaped() -> None:
    c = core()
    with pytest.raises(errors.ServiceUnavailableError) as caught:
        c.finish(c.user_secrets("me"), 503, {}, b"<html>bad gateway</html>")
    assert (caught.value.message, caught.value.detail, caught.value.validations) == (
        "Unexpected HTTP 503 response.",
        "",
        (),
    )
    assert str(caught.value) == "Unexpected HTTP 503 response. (HTTP 503)"


def test_error_text_is_one_line_with_validations() -> None:
    error = errors.ValidationError(400, "Validation failed.", "", [Validation("name", "name is required")])
    assert str(error) == "Validation failed. (HTTP 400) [name: name is required]"


def _aiohttp_error_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    todo: list[type[BaseException]] = [aiohttp.ClientError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return [c for c in found[1:] if c.__module__.startswith("aiohttp.") and "WS" not in c.__name__]


@pytest.mark.parametrize("cls", _aiohttp_error_classes(), ids=lambda c: c.__name__)
def test_every_aiohttp_error_is_mapped(cls: type[BaseException]) -> None:
    """Like httpx's test of httpcore's errors: a new aiohttp exception must be given a message on purpose."""
    mapped = [k for k in cls.__mro__ if k in async_module.AIOHTTP_ERRORS]
    assert mapped, f"{cls.__name__} has no entry in AIOHTTP_ERRORS"
    assert mapped[0] is not aiohttp.ClientError


SOCKET_CASES = [
    (TimeoutError("timed out"), errors.RequestTimeoutError, "Timed out waiting for the server."),
    (ConnectionRefusedError(111, "refused"), errors.TransportError, "Cannot connect to the server."),
    (socket.gaierror(-2, "Name or service not known"), errors.TransportError, "Cannot resolve the server's host name."),
    (ssl.SSLCertVerificationError("bad cert"), errors.TransportError, "TLS with the server failed."),
    (http.client.RemoteDisconnected("closed"), errors.TransportError, "The server closed the connection."),
    (http.client.IncompleteRead(b"", 5), errors.TransportError, "The server's answer was cut short or malformed."),
    (http.client.BadStatusLine("x"), errors.TransportError, "The server's answer could not be read."),
    (OSError(101, "unreachable"), errors.TransportError, "Network error talking to the server."),
]


@pytest.mark.parametrize(("exc", "cls", "message"), SOCKET_CASES, ids=lambda v: type(v).__name__)
def test_socket_error_mapping(exc: BaseException, cls: type[errors.TransportError], message: str) -> None:
    mapped = sync_module.map_transport_error(exc)
    assert (type(mapped), mapped.status, mapped.message) == (cls, 0, message)


def test_every_http_client_error_is_mapped() -> None:
    for name in dir(http.client):
        cls = getattr(http.client, name)
        if isinstance(cls, type) and issubclass(cls, http.client.HTTPException):
            mapped = [k for k in cls.__mro__ if k in sync_module.SOCKET_ERRORS]
            assert mapped, f"http.client.{name} is not mapped"
