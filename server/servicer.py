"""UserSecretsService over gRPC: proto in, a service call, proto out. Errors are mapped by the interceptor."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from usersecrets.server.interceptor import current_principal
from usersecrets.server.model import StoredSecret
from usersecrets.server.service import NewSecret, SecretPatch, SecretsService
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def to_proto(secret: StoredSecret) -> pb.UserSecret:
    return pb.UserSecret(
        id=secret.id,
        name=secret.name,
        description=secret.description,
        env_name=secret.env_name,
        file_path=secret.file_path,
        created_at=_timestamp(secret.created_at_us),
        updated_at=_timestamp(secret.updated_at_us),
    )


def _optional(request: pb.UpdateUserSecretRequest, field: str) -> str | None:
    return getattr(request, field) if request.HasField(field) else None


class UserSecretsServicer(pb_grpc.UserSecretsServiceServicer):
    def __init__(self, service: SecretsService) -> None:
        self._service = service

    async def CreateUserSecret(
        self, request: pb.CreateUserSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.UserSecret:
        new = NewSecret(
            name=request.name,
            value=request.value,
            description=request.description,
            env_name=request.env_name,
            file_path=request.file_path,
        )
        return to_proto(await self._service.create(current_principal(), request.user, new))

    async def ListUserSecrets(
        self, request: pb.ListUserSecretsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUserSecretsResponse:
        secrets = await self._service.list(current_principal(), request.user)
        return pb.ListUserSecretsResponse(secrets=[to_proto(s) for s in secrets])

    async def GetUserSecret(self, request: pb.GetUserSecretRequest, context: grpc.aio.ServicerContext) -> pb.UserSecret:
        return to_proto(await self._service.get(current_principal(), request.user, request.name))

    async def UpdateUserSecret(
        self, request: pb.UpdateUserSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.UserSecret:
        patch = SecretPatch(
            value=_optional(request, "value"),
            description=_optional(request, "description"),
            env_name=_optional(request, "env_name"),
            file_path=_optional(request, "file_path"),
        )
        return to_proto(await self._service.update(current_principal(), request.user, request.name, patch))

    async def DeleteUserSecret(
        self, request: pb.DeleteUserSecretRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._service.delete(current_principal(), request.user, request.name)
        return empty_pb2.Empty()

    async def ListUserSecretValues(
        self, request: pb.ListUserSecretValuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUserSecretValuesResponse:
        pairs = await self._service.list_values(current_principal(), request.user)
        return pb.ListUserSecretValuesResponse(
            values=[pb.UserSecretValue(secret=to_proto(s), value=v) for s, v in pairs]
        )
