"""The SDK's one error tree. Every failure of a call raises exactly one of these.

    UserSecretsError                  status, message, detail, validations (status 0: no HTTP answer)
    ├── TransportError                no answer: refused, reset, DNS, TLS, unreadable response    0
    │   └── RequestTimeoutError       the client's timeout passed first                           0
    ├── BadRequestError               400 not covered below: bad `user`, no fields, bad JSON      400
    │   ├── ValidationError           field rules broken; `validations` lists each field          400
    │   └── LimitReachedError         a per-user limit (count or bytes) would be passed           400
    ├── UnauthorizedError             no, malformed, unknown, expired or revoked token            401
    ├── ForbiddenError                `user` names another user                                   403
    ├── NotFoundError                 no such secret                                              404
    ├── ConflictError                 name / env_name / file_path already in use (`validations`)  409
    ├── PayloadTooLargeError          body above the gateway's cap                                413
    ├── RateLimitedError              too many requests for this token; `retry_after` seconds     429
    └── ServerError                   any 5xx
        ├── ServiceUnavailableError   gRPC server or Redis unreachable                            503
        └── GatewayTimeoutError       the server's deadline passed                                504

Other statuses raise UserSecretsError itself. Texts come from the server's error body, which never holds a
secret value or a token; the SDK adds neither.
"""

from __future__ import annotations

from collections.abc import Sequence

from usersecrets.sdk.models import Validation


class UserSecretsError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        detail: str = "",
        validations: Sequence[Validation] = (),
    ) -> None:
        self.status = status
        self.message = message
        self.detail = detail
        self.validations = tuple(validations)
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line: message, detail, status and every validation."""
        text = f"{self.message} {self.detail}" if self.detail else self.message
        if self.status:
            text += f" (HTTP {self.status})"
        if self.validations:
            text += " [" + "; ".join(f"{v.field}: {v.detail}" for v in self.validations) + "]"
        return text


class TransportError(UserSecretsError):
    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(0, message, detail)


class RequestTimeoutError(TransportError):
    pass


class BadRequestError(UserSecretsError):
    pass


class ValidationError(BadRequestError):
    pass


class LimitReachedError(BadRequestError):
    pass


class UnauthorizedError(UserSecretsError):
    pass


class ForbiddenError(UserSecretsError):
    pass


class NotFoundError(UserSecretsError):
    pass


class ConflictError(UserSecretsError):
    pass


class PayloadTooLargeError(UserSecretsError):
    pass


class RateLimitedError(UserSecretsError):
    def __init__(
        self,
        status: int,
        message: str,
        detail: str = "",
        validations: Sequence[Validation] = (),
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status, message, detail, validations)


class ServerError(UserSecretsError):
    pass


class ServiceUnavailableError(ServerError):
    pass


class GatewayTimeoutError(ServerError):
    pass


BY_STATUS: dict[int, type[UserSecretsError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def class_for(status: int, validations: Sequence[Validation], message: str) -> type[UserSecretsError]:
    """The most specific class for an HTTP error answer."""
    if status == 400:
        if validations:
            return ValidationError
        # Count and byte limits share a status with other 400s; the contract's messages name the limit.
        if "limit" in message.lower():
            return LimitReachedError
        return BadRequestError
    if status in BY_STATUS:
        return BY_STATUS[status]
    if 500 <= status <= 599:
        return ServerError
    return UserSecretsError
