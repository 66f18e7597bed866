"""The server's error tree. Rules raise these; `grpc_errors.py` maps them to gRPC statuses in one place.

    ServiceError                      every failure a caller may see
    ├── Unauthenticated               no, malformed, unknown, expired or revoked token      UNAUTHENTICATED
    ├── PermissionDenied              another user's secrets, or a missing service role     PERMISSION_DENIED
    ├── BadUserParam                  `{user}` is neither me, an existing UUID nor username INVALID_ARGUMENT
    ├── ValidationFailed              field rules broken; carries every violation           INVALID_ARGUMENT
    ├── NoFieldsToUpdate              PATCH with none of the four fields                    INVALID_ARGUMENT
    ├── AlreadyExists                 name / env_name / file_path used by another secret    ALREADY_EXISTS
    ├── LimitReached                  a per-user limit would be passed                      FAILED_PRECONDITION
    ├── NotFound                      no such secret                                        NOT_FOUND
    ├── RateLimited                   too many calls for one token; carries retry_after     RESOURCE_EXHAUSTED
    ├── StorageUnavailable            Redis unreachable, loading or timing out              UNAVAILABLE
    └── DecryptionFailed              a stored value does not open under the key ring       DATA_LOSS

Exception texts never contain a secret value or a token.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."
FORBIDDEN = "Forbidden."
BAD_USER = '"user" must be an existing uuid or username.'
NOT_FOUND = "Resource not found or you do not have access to this resource"
VALIDATION_FAILED = "Validation failed."
NO_FIELDS = "At least one field must be provided."
UNAVAILABLE = "The secrets store is unavailable. Try again later."
RATE_LIMITED = "Rate limit exceeded."
DECRYPTION_FAILED = "A stored secret value could not be decrypted."


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    detail: str


class ServiceError(Exception):
    message: str = "Internal error."

    def __init__(self, detail: str = "", *, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        self.detail = detail
        super().__init__(f"{self.message} {detail}".strip())


class Unauthenticated(ServiceError):
    message = SIGNED_OUT


class PermissionDenied(ServiceError):
    message = FORBIDDEN


class BadUserParam(ServiceError):
    message = BAD_USER


class ValidationFailed(ServiceError):
    message = VALIDATION_FAILED

    def __init__(self, violations: list[FieldViolation], detail: str = "") -> None:
        assert violations, "ValidationFailed needs at least one violation"
        self.violations = list(violations)
        super().__init__(detail)


class NoFieldsToUpdate(ServiceError):
    message = NO_FIELDS


class AlreadyExists(ServiceError):
    message = VALIDATION_FAILED

    def __init__(self, field: str) -> None:
        self.violations = [FieldViolation(field, f"{field} already in use")]
        super().__init__()


class LimitReached(ServiceError):
    """`message` names the limit ("User secrets limit reached." or a bytes variant)."""


class NotFound(ServiceError):
    message = NOT_FOUND


class RateLimited(ServiceError):
    message = RATE_LIMITED

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"Try again in {retry_after:.3f} seconds.")


class StorageUnavailable(ServiceError):
    message = UNAVAILABLE


class DecryptionFailed(ServiceError):
    message = DECRYPTION_FAILED
