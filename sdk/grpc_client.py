"""gRPC access for internal callers (the services that inject secrets into workspaces).

    with connect("secrets.internal:50051", token, root_certificates=ca) as conn:
        values = list_user_secret_values(conn.stub, "alice")

    async with aio_connect("127.0.0.1:50051", token) as conn:
        values = await alist_user_secret_values(conn.stub, "alice")

The token rides in the `coder-session-token` metadata of every call, added by an interceptor so it also works
on a plaintext channel (gRPC call credentials demand TLS). Give `root_certificates` for TLS and add
`certificate_chain` + `private_key` for mTLS. gRPC errors are left as `grpc.RpcError`: their status
details carry `google.rpc.BadRequest` field violations, which `rpc_violations` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from usersecrets.sdk.models import UserSecret, UserSecretValue, Validation
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1.usersecrets_pb2_grpc import UserSecretsServiceStub

TOKEN_METADATA = "coder-session-token"  # noqa: S105 - a metadata key
STATUS_DETAILS_METADATA = "grpc-status-details-bin"
ChannelOptions = Sequence[tuple[str, Any]]


def _with_token(metadata: Any, token: str) -> list[tuple[str, str | bytes]]:
    kept = [(k, v) for k, v in (metadata or ()) if k != TOKEN_METADATA]
    return [*kept, (TOKEN_METADATA, token)]


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            _with_token(details.metadata, self._token),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _AioTokenInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        details = grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*_with_token(details.metadata, self._token)),
            details.credentials,
            details.wait_for_ready,
        )
        return await continuation(details, request)


def _credentials(
    root_certificates: bytes | None, certificate_chain: bytes | None, private_key: bytes | None
) -> grpc.ChannelCredentials | None:
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("mTLS needs both certificate_chain and private_key")
    if root_certificates is None and certificate_chain is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)


def _options(options: ChannelOptions, server_name: str | None) -> list[tuple[str, Any]]:
    merged = list(options)
    if server_name:
        merged.append(("grpc.ssl_target_name_override", server_name))
    return merged


@dataclass
class Connection:
    """A channel and the stub on it; closing it closes the channel."""

    channel: grpc.Channel
    stub: UserSecretsServiceStub

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@dataclass
class AioConnection:
    channel: grpc.aio.Channel
    stub: UserSecretsServiceStub

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AioConnection:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def connect(
    target: str,
    token: str,
    *,
    root_certificates: bytes | None = None,
    certificate_chain: bytes | None = None,
    private_key: bytes | None = None,
    server_name: str | None = None,
    options: ChannelOptions = (),
) -> Connection:
    """A blocking channel to the server whose every call carries `token`. TLS when any certificate is given."""
    credentials = _credentials(root_certificates, certificate_chain, private_key)
    merged = _options(options, server_name)
    if credentials is None:
        channel = grpc.insecure_channel(target, options=merged)
    else:
        channel = grpc.secure_channel(target, credentials, options=merged)
    intercepted = grpc.intercept_channel(channel, _TokenInterceptor(token))
    return Connection(intercepted, UserSecretsServiceStub(intercepted))


def aio_connect(
    target: str,
    token: str,
    *,
    root_certificates: bytes | None = None,
    certificate_chain: bytes | None = None,
    private_key: bytes | None = None,
    server_name: str | None = None,
    options: ChannelOptions = (),
) -> AioConnection:
    """The asyncio twin of `connect`; call it while an event loop runs."""
    credentials = _credentials(root_certificates, certificate_chain, private_key)
    merged = _options(options, server_name)
    interceptors = [_AioTokenInterceptor(token)]
    if credentials is None:
        channel = grpc.aio.insecure_channel(target, options=merged, interceptors=interceptors)
    else:
        channel = grpc.aio.secure_channel(target, credentials, options=merged, interceptors=interceptors)
    return AioConnection(channel, UserSecretsServiceStub(channel))


def list_user_secret_values(
    stub: UserSecretsServiceStub, user: str, *, timeout: float | None = 10.0
) -> list[UserSecretValue]:
    """Every secret of `user` with its value, sorted by name. Needs a token with the service role."""
    response = stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), timeout=timeout)
    return [_value_from_proto(item) for item in response.values]


async def alist_user_secret_values(
    stub: UserSecretsServiceStub,
    user: str,
    *,
    timeout: float | None = 10.0,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
) -> list[UserSecretValue]:
    response = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user=user), timeout=timeout)
    return [_value_from_proto(item) for item in response.values]


def secret_from_proto(secret: pb.UserSecret) -> UserSecret:
    return UserSecret(
        id=secret.id,
        name=secret.name,
        description=secret.description,
        env_name=secret.env_name,
        file_path=secret.file_path,
        created_at=_moment(secret.created_at),
        updated_at=_moment(secret.updated_at),
    )


def _value_from_proto(item: pb.UserSecretValue) -> UserSecretValue:
    return UserSecretValue(secret_from_proto(item.secret), item.value)


def _moment(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def rpc_violations(error: grpc.RpcError) -> list[Validation]:
    """The field violations a failed call (sync or aio) carries as `google.rpc.BadRequest` details."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None  # type: ignore[attr-defined]
    found: list[Validation] = []
    for key, raw in trailing or ():
        if key != STATUS_DETAILS_METADATA:
            continue
        status = status_pb2.Status.FromString(raw)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                found.extend(Validation(v.field, v.description) for v in bad.field_violations)
    return found
