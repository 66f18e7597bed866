"""Python SDK for the usersecrets REST API: `AsyncClient` (aiohttp) and its synchronous twin `Client`.

Both raise only `UserSecretsError` and its subclasses (see `usersecrets.sdk.errors`). Internal services
that need secret values use `usersecrets.sdk.grpc_client` instead.
"""

from typing import TYPE_CHECKING, Any

from usersecrets.sdk.errors import (
    BadRequestError,
    ConflictError,
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
    UserSecretsError,
    ValidationError,
)
from usersecrets.sdk.models import (
    CreateUserSecretRequest,
    UpdateUserSecretRequest,
    UserSecret,
    UserSecretValue,
    Validation,
)
from usersecrets.sdk.sync_client import Client

if TYPE_CHECKING:
    from usersecrets.sdk.client import AsyncClient


def __getattr__(name: str) -> Any:
    # aiohttp is imported only by callers of the async client: the CLI starts faster without it.
    if name == "AsyncClient":
        from usersecrets.sdk.client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "BadRequestError",
    "Client",
    "ConflictError",
    "CreateUserSecretRequest",
    "ForbiddenError",
    "GatewayTimeoutError",
    "LimitReachedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "UnauthorizedError",
    "UpdateUserSecretRequest",
    "UserSecret",
    "UserSecretValue",
    "UserSecretsError",
    "Validation",
    "ValidationError",
]
