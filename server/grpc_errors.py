"""Domain errors to gRPC statuses, in one place, with the contract's message and google.rpc details.

The status message is the contract's `message`. Field violations travel as `google.rpc.BadRequest`; the
`detail` text travels as `google.rpc.ErrorInfo.metadata["detail"]`, with a machine-readable `reason`.
"""

from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from usersecrets.server import errors

DOMAIN = "usersecrets.v1"

# Ordered most specific first; every ServiceError subclass is listed (a test checks).
_CODES: dict[type[errors.ServiceError], tuple[int, str]] = {
    errors.Unauthenticated: (code_pb2.UNAUTHENTICATED, "UNAUTHENTICATED"),
    errors.PermissionDenied: (code_pb2.PERMISSION_DENIED, "FORBIDDEN"),
    errors.BadUserParam: (code_pb2.INVALID_ARGUMENT, "BAD_USER_PARAM"),
    errors.ValidationFailed: (code_pb2.INVALID_ARGUMENT, "VALIDATION_FAILED"),
    errors.NoFieldsToUpdate: (code_pb2.INVALID_ARGUMENT, "NO_FIELDS"),
    errors.AlreadyExists: (code_pb2.ALREADY_EXISTS, "ALREADY_EXISTS"),
    # The request is well formed but the user's state forbids it: FAILED_PRECONDITION, which REST shows as 400.
    errors.LimitReached: (code_pb2.FAILED_PRECONDITION, "LIMIT_REACHED"),
    errors.NotFound: (code_pb2.NOT_FOUND, "NOT_FOUND"),
    errors.RateLimited: (code_pb2.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
    errors.StorageUnavailable: (code_pb2.UNAVAILABLE, "STORAGE_UNAVAILABLE"),
    errors.DecryptionFailed: (code_pb2.DATA_LOSS, "DECRYPTION_FAILED"),
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_proto(exc: errors.ServiceError) -> status_pb2.Status:
    code, reason = _CODES[type(exc)]
    details = []
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    if exc.detail:
        info.metadata["detail"] = exc.detail
    details.append(_pack(info))
    violations = getattr(exc, "violations", None)
    if violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.detail) for v in violations
            ]
        )
        details.append(_pack(bad))
    if isinstance(exc, errors.RateLimited):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1, int(exc.retry_after * 1e9)))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code, message=exc.message, details=details)


def internal_proto() -> status_pb2.Status:
    """For a bug: no exception text leaves the process (it could hold data)."""
    return status_pb2.Status(code=code_pb2.INTERNAL, message="Internal error.")


def mapped_types() -> frozenset[type[errors.ServiceError]]:
    return frozenset(_CODES)
