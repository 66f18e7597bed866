"""The SDK against a live stack: real Redis, `usersecrets-server` and `usersecrets-gateway` processes, real HTTP.

Every method runs through both clients (`api` is parametrized: the sync client runs on a worker thread, the
async one on the test's loop). Each test makes its own users, so tests share one stack per module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from tests.support.live_stack import RATE_BURST, LiveStack, start_live_stack, values_of
from tests.support.redis_proc import RedisProcess, free_port
from usersecrets.gateway import errors as gateway_errors
from usersecrets.sdk import (
    AsyncClient,
    BadRequestError,
    Client,
    ConflictError,
    CreateUserSecretRequest,
    ForbiddenError,
    GatewayTimeoutError,
    LimitReachedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    UnauthorizedError,
    UpdateUserSecretRequest,
    UserSecret,
    UserSecretsError,
    Validation,
    ValidationError,
)

SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
NOT_FOUND = "Resource not found or you do not have access to this resource"


@pytest.fixture(scope="module")
def stack(redis_proc: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    yield from start_live_stack(tmp_path_factory.mktemp("sdk-stack"), redis_proc.url)


class Api:
    """One face for both clients: every method is awaited; the sync client's calls run on a thread."""

    def __init__(self, kind: str, client: Client | AsyncClient) -> None:
        self.kind = kind
        self.client = client

    def __getattr__(self, method: str) -> Any:
        target = getattr(self.client, method)
        if self.kind == "async":
            return target
        return lambda *args: asyncio.to_thread(target, *args)


@pytest.fixture(params=["sync", "async"])
async def make_api(request: pytest.FixtureRequest, stack: LiveStack) -> AsyncIterator[Any]:
    opened: list[Client | AsyncClient] = []

    def make(token: str | None, url: str | None = None, timeout: float = 10.0) -> Api:
        kind = request.param
        cls = Client if kind == "sync" else AsyncClient
        client = cls(url or stack.url, token, timeout=timeout, environ={})
        opened.append(client)
        return Api(kind, client)

    yield make
    for client in opened:
        if isinstance(client, AsyncClient):
            await client.aclose()
        else:
            client.close()


# -- every method ------------------------------------------------------------------------------------------


async def test_every_method_round_trip(stack: LiveStack, make_api: Any) -> None:
    user_id, username, token = stack.new_user()
    api = make_api(token)
    name = "deploy key 100% prod"
    before = datetime.now(UTC) - timedelta(seconds=1)

    made = await api.create_user_secret(
        "me", CreateUserSecretRequest(name, "v1", description="d", env_name="DEPLOY_KEY", file_path="~/.key")
    )
    assert (made.name, made.description, made.env_name, made.file_path) == (name, "d", "DEPLOY_KEY", "~/.key")
    assert str(uuid.UUID(made.id)) == made.id
    assert made.created_at == made.updated_at and made.created_at > before
    assert await api.user_secrets("me") == [made]
    for user in ("me", username, user_id):
        assert await api.user_secret_by_name(user, name) == made, f"user_secret_by_name({user!r})"

    changed = await api.update_user_secret("me", name, UpdateUserSecretRequest(value="v2", description=""))
    assert (changed.id, changed.name, changed.description, changed.env_name, changed.file_path) == (
        made.id,
        name,
        "",
        "DEPLOY_KEY",
        "~/.key",
    )
    assert changed.created_at == made.created_at and changed.updated_at > made.updated_at
    assert values_of(stack, username) == {name: "v2"}

    assert await api.delete_user_secret(username, name) is None
    assert await api.user_secrets(user_id) == []
    with pytest.raises(NotFoundError):
        await api.user_secret_by_name("me", name)


async def test_list_is_sorted_by_name_bytes(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    api = make_api(token)
    for name in ("b", "B", "a b", "a", "_"):
        await api.create_user_secret("me", CreateUserSecretRequest(name, "v"))
    assert [s.name for s in await api.user_secrets("me")] == ["B", "_", "a", "a b", "b"]


TRICKY_NAMES = ["with space", "100%", "%20", "%2F", "a%b c", "+&=;,", "ünïcødé ✓", "..x", "tab\there", "~"]


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=repr)
async def test_names_that_need_encoding(stack: LiveStack, make_api: Any, name: str) -> None:
    _, _, token = stack.new_user()
    api = make_api(token)
    made = await api.create_user_secret("me", CreateUserSecretRequest(name, "v"))
    assert made.name == name
    got = await api.user_secret_by_name("me", name)
    assert got == made, f"user_secret_by_name({name!r}) = {got!r}"
    changed = await api.update_user_secret("me", name, UpdateUserSecretRequest(description="x"))
    assert (changed.name, changed.description) == (name, "x")
    assert [s.name for s in await api.user_secrets("me")] == [name]
    await api.delete_user_secret("me", name)
    assert await api.user_secrets("me") == []


# -- every error class ------------------------------------------------------------------------------------


async def expect(call: Any, cls: type[UserSecretsError], status: int, message: str) -> UserSecretsError:
    with pytest.raises(UserSecretsError) as caught:
        await call
    error = caught.value
    assert type(error) is cls, f"raised {type(error).__name__} {error}; want {cls.__name__}"
    assert (error.status, error.message) == (status, message), str(error)
    return error


@pytest.mark.parametrize("token", ["", "nosuchid12-secretpart", "garbage"], ids=["none", "unknown", "malformed"])
async def test_unauthorized(stack: LiveStack, make_api: Any, token: str) -> None:
    error = await expect(make_api(token).user_secrets("me"), UnauthorizedError, 401, SIGNED_OUT)
    assert error.validations == ()
    if token:
        assert token not in str(error)


async def test_forbidden_and_bad_user(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    other_id, other_name, _ = stack.new_user()
    api = make_api(token)
    for user in (other_name, other_id):
        await expect(api.user_secret_by_name(user, "anything"), ForbiddenError, 403, "Forbidden.")
    await expect(
        api.user_secrets("no-such-user-" + uuid.uuid4().hex[:6]),
        BadRequestError,
        400,
        '"user" must be an existing uuid or username.',
    )


async def test_not_found(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    api = make_api(token)
    for call in (
        api.user_secret_by_name("me", "missing"),
        api.update_user_secret("me", "missing", UpdateUserSecretRequest(description="x")),
        api.delete_user_secret("me", "missing"),
    ):
        await expect(call, NotFoundError, 404, NOT_FOUND)


async def test_validation_lists_every_field(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    canary = "canary-" + uuid.uuid4().hex
    error = await expect(
        make_api(token).create_user_secret(
            "me", CreateUserSecretRequest(" padded", canary + "\x00", env_name="1BAD", file_path="relative")
        ),
        ValidationError,
        400,
        "Validation failed.",
    )
    assert sorted(v.field for v in error.validations) == ["env_name", "file_path", "name", "value"]
    assert canary not in str(error) and canary not in repr(error.validations)


async def test_conflict_names_the_field(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    api = make_api(token)
    await api.create_user_secret("me", CreateUserSecretRequest("one", "v", env_name="ONE", file_path="/one"))
    cases = [
        (CreateUserSecretRequest("one", "v"), "name"),
        (CreateUserSecretRequest("two", "v", env_name="ONE"), "env_name"),
        (CreateUserSecretRequest("three", "v", file_path="/one"), "file_path"),
    ]
    for request, field in cases:
        error = await expect(api.create_user_secret("me", request), ConflictError, 409, "Validation failed.")
        assert error.validations == (Validation(field, f"{field} already in use"),)


async def test_bad_requests(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    api = make_api(token)
    await api.create_user_secret("me", CreateUserSecretRequest("big", "x" * 24576, env_name="BIG"))
    error = await expect(
        api.create_user_secret("me", CreateUserSecretRequest("more", "y", env_name="MORE")),
        LimitReachedError,
        400,
        "User secrets environment value size limit reached.",
    )
    assert error.detail
    await expect(
        api.update_user_secret("me", "big", UpdateUserSecretRequest()),
        BadRequestError,
        400,
        "At least one field must be provided.",
    )
    error = await expect(
        api.create_user_secret("me", CreateUserSecretRequest("huge", "z" * (1024 * 1024 + 1))),
        PayloadTooLargeError,
        413,
        gateway_errors.BODY_TOO_LARGE,
    )
    assert "zzzz" not in str(error)


async def test_rate_limited_carries_retry_after(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    api = make_api(token)
    results = await asyncio.gather(*(api.user_secrets("me") for _ in range(2 * RATE_BURST)), return_exceptions=True)
    limited = [r for r in results if isinstance(r, UserSecretsError)]
    assert limited, "no call was rate limited"
    assert all(type(r) is RateLimitedError and r.status == 429 for r in limited), limited[:3]
    assert all(r.retry_after is not None and r.retry_after >= 1 for r in limited)  # type: ignore[attr-defined]


async def test_service_unavailable(stack: LiveStack, make_api: Any) -> None:
    proc, url = stack.spawn_gateway(f"127.0.0.1:{free_port()}")
    try:
        error = await expect(
            make_api("abcdefghij-x", url).user_secrets("me"),
            ServiceUnavailableError,
            503,
            gateway_errors.UNAVAILABLE,
        )
        assert error.validations == ()
    finally:
        proc.terminate()
        proc.wait(10)


async def test_server_error_from_a_server_without_the_service(stack: LiveStack, make_api: Any) -> None:
    """A real gRPC server that lacks the service answers UNIMPLEMENTED, which the gateway makes a 501."""
    bare = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()
    proc, url = stack.spawn_gateway(f"127.0.0.1:{port}")
    try:
        with pytest.raises(UserSecretsError) as caught:
            await make_api("abcdefghij-x", url).user_secrets("me")
        assert type(caught.value) is ServerError and caught.value.status == 501, caught.value
    finally:
        proc.terminate()
        proc.wait(10)
        await bare.stop(None)


async def test_gateway_timeout_while_the_server_is_stopped(stack: LiveStack, make_api: Any) -> None:
    _, _, token = stack.new_user()
    proc, url = stack.spawn_gateway(stack.running.grpc_target, USERSECRETS_DEFAULT_DEADLINE="0.5")
    server = stack.child_pid("server")
    try:
        api = make_api(token, url)
        assert await api.user_secrets("me") == []  # the channel is up before the server freezes
        os.kill(server, signal.SIGSTOP)
        try:
            error = await expect(api.user_secrets("me"), GatewayTimeoutError, 504, gateway_errors.DEADLINE_EXCEEDED)
        finally:
            os.kill(server, signal.SIGCONT)
        assert error.status == 504
    finally:
        proc.terminate()
        proc.wait(10)


async def test_transport_errors(stack: LiveStack, make_api: Any) -> None:
    closed = free_port()
    error = await expect(
        make_api("a-b", f"http://127.0.0.1:{closed}").user_secrets("me"),
        TransportError,
        0,
        "Cannot connect to the server.",
    )
    assert "a-b" not in str(error)
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        await expect(
            make_api("a-b", url, timeout=0.3).user_secrets("me"),
            RequestTimeoutError,
            0,
            "Timed out waiting for the server.",
        )


# -- clients as resources -----------------------------------------------------------------------------


def test_sync_client_reuses_one_connection_and_closes(stack: LiveStack) -> None:
    _, _, token = stack.new_user()
    with Client(stack.url, token, environ={}) as client:
        for _ in range(3):
            assert client.user_secrets("me") == []
        assert len(client._pool._idle) == 1
    with pytest.raises(RuntimeError):
        client.user_secrets("me")


async def test_async_client_context_closes_its_session(stack: LiveStack) -> None:
    _, _, token = stack.new_user()
    async with AsyncClient(stack.url, token, environ={}) as client:
        assert await client.user_secrets("me") == []
        session = client._session
        assert session is not None and not session.closed
    assert session.closed
    with pytest.raises(RuntimeError):
        await client.user_secrets("me")


def test_clients_read_url_and_token_from_the_environment(stack: LiveStack) -> None:
    _, _, token = stack.new_user()
    environ = {"USERSECRETS_URL": stack.url, "USERSECRETS_TOKEN": token}
    with Client(environ=environ) as client:
        made = client.create_user_secret("me", CreateUserSecretRequest("env", "v"))
        assert isinstance(made, UserSecret)
        assert client.user_secrets("me") == [made]
