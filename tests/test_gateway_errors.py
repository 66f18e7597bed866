"""The gRPC -> HTTP table (grpc-gateway's, every code) and the one writer of Coder error bodies."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from usersecrets.gateway import errors

# grpc-gateway runtime/errors.go HTTPStatusFromCode, copied independently of the module under test.
WANT = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=[c.name for c in grpc.StatusCode])
def test_every_status_code_is_mapped(code: grpc.StatusCode) -> None:
    assert code in errors.HTTP_STATUS_BY_CODE, f"{code.name} has no row in HTTP_STATUS_BY_CODE"
    got = errors.http_status(code)
    assert got == WANT[code.name], f"http_status({code.name}) = {got}; want {WANT[code.name]}"


def _pack(*messages: object) -> bytes:
    details = []
    for m in messages:
        packed = any_pb2.Any()
        packed.Pack(m)  # type: ignore[arg-type]
        details.append(packed)
    return status_pb2.Status(code=3, message="Validation failed.", details=details).SerializeToString()


def rpc_error(code: grpc.StatusCode, message: str, details: bytes | None = None) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", details)) if details is not None else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message)


def test_rich_details_become_validations_and_detail() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="name", description="name is required"),
            error_details_pb2.BadRequest.FieldViolation(field="env_name", description="env_name is reserved"),
        ]
    )
    info = error_details_pb2.ErrorInfo(reason="VALIDATION_FAILED", domain="usersecrets.v1", metadata={"detail": "d"})
    err = errors.from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "Validation failed.", _pack(info, bad)))
    assert (err.status, err.body()) == (
        400,
        {
            "message": "Validation failed.",
            "detail": "d",
            "validations": [
                {"field": "name", "detail": "name is required"},
                {"field": "env_name", "detail": "env_name is reserved"},
            ],
        },
    )


def test_retry_info_becomes_retry_after_rounded_up() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=200_000_000))
    err = errors.from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Rate limit exceeded.", _pack(retry)))
    assert (err.status, err.headers) == (429, {"Retry-After": "2"})


CHANNEL = [
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; ipv4:127.0.0.1:1", 503, errors.UNAVAILABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", 504, errors.DEADLINE_EXCEEDED),
    (grpc.StatusCode.CANCELLED, "Locally cancelled", 499, errors.CANCELLED),
    (grpc.StatusCode.UNKNOWN, "Exception calling application: secret-ish text", 500, errors.INTERNAL),
    (grpc.StatusCode.NOT_FOUND, "Resource not found or you do not have access to this resource", 404, None),
    (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2", 500, errors.INTERNAL),
    (grpc.StatusCode.UNIMPLEMENTED, "Method not found!", 501, errors.NOT_IMPLEMENTED),
    (grpc.StatusCode.PERMISSION_DENIED, "Forbidden.", 403, None),
]


@pytest.mark.parametrize(("code", "text", "status", "message"), CHANNEL, ids=[c[0].name for c in CHANNEL])
def test_status_without_details(code: grpc.StatusCode, text: str, status: int, message: str | None) -> None:
    err = errors.from_rpc_error(rpc_error(code, text))
    assert (err.status, err.body()) == (status, {"message": message or text})


def test_server_message_wins_when_details_are_present() -> None:
    info = error_details_pb2.ErrorInfo(reason="STORAGE_UNAVAILABLE")
    raw = status_pb2.Status(code=14, message="The secrets store is unavailable.", details=[_any(info)])
    err = errors.from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE, "x", raw.SerializeToString()))
    assert (err.status, err.body()) == (503, {"message": "The secrets store is unavailable."})


def _any(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def test_malformed_details_fall_back_to_the_status() -> None:
    err = errors.from_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, "Not here.", b"\xff\xff garbage"))
    assert (err.status, err.body()) == (404, {"message": "Not here."})


def test_error_response_shape_and_headers() -> None:
    err = errors.ApiError(405, "Method not allowed.", headers={"Allow": "GET, POST"})
    response = errors.error_response(err)
    assert (response.status, response.content_type, response.headers["Allow"]) == (405, "application/json", "GET, POST")
    assert json.loads(response.body) == {"message": "Method not allowed."}


def test_error_response_falls_back_when_the_body_cannot_be_encoded() -> None:
    err = errors.ApiError(400, "x", validations=(errors.Validation("f", object()),))  # type: ignore[arg-type]
    response = errors.error_response(err)
    assert (response.status, response.body) == (400, errors.FALLBACK_BODY)
    assert json.loads(errors.FALLBACK_BODY) == {"message": "Internal error."}
