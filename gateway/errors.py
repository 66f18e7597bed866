"""Every error the gateway answers, and the one place that writes an error body.

    ApiError                          an HTTP error in Coder's shape
    ├── from_rpc_error(...)           a gRPC status from the server (or from the channel itself)
    └── built directly                routing, body, header errors found before any RPC

The body is `{"message", "detail"?, "validations"?}` (empty keys left out), always JSON. If encoding it fails
the client still gets JSON: a hard-coded fallback body.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import grpc
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2

from usersecrets.common.grpc_codes import code_of

# grpc-gateway's runtime/errors.go HTTPStatusFromCode, row for row.
HTTP_STATUS_BY_CODE: Mapping[grpc.StatusCode, int] = MappingProxyType(
    {
        grpc.StatusCode.OK: 200,
        # 499 is nginx's "client closed request": the caller gave up, nothing went wrong on our side.
        grpc.StatusCode.CANCELLED: 499,
        grpc.StatusCode.UNKNOWN: 500,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.ALREADY_EXISTS: 409,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        # A quota or rate limit; HTTP clients know 429 and its Retry-After.
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        # Deliberately not 412 Precondition Failed: that status is about conditional-request headers
        # (If-Match), while FAILED_PRECONDITION means "the system is not in a state for this request".
        grpc.StatusCode.FAILED_PRECONDITION: 400,
        # ABORTED is a concurrency conflict (a lost transaction race): a conflict, like ALREADY_EXISTS.
        grpc.StatusCode.ABORTED: 409,
        # Not 416 Range Not Satisfiable: OUT_OF_RANGE is about request values, not byte ranges.
        grpc.StatusCode.OUT_OF_RANGE: 400,
        grpc.StatusCode.UNIMPLEMENTED: 501,
        grpc.StatusCode.INTERNAL: 500,
        grpc.StatusCode.UNAVAILABLE: 503,
        # Data loss is the server's fault, never the caller's: a plain 500.
        grpc.StatusCode.DATA_LOSS: 500,
    }
)

# The server attaches google.rpc details to every error it means to send. A server-side status without them
# was made by the channel or by grpcio itself (no server answered, a deadline, a servicer that raised), and
# its text names addresses or quotes exception text: the caller gets one of these fixed messages instead.
UNAVAILABLE = "The secrets service is unavailable. Try again later."
DEADLINE_EXCEEDED = "The request deadline passed before the secrets service answered."
CANCELLED = "The request was cancelled."
INTERNAL = "Internal error."
BUSY = "The secrets service is busy. Try again later."
NOT_IMPLEMENTED = "Not implemented."
_CHANNEL_MESSAGES: Mapping[grpc.StatusCode, str] = MappingProxyType(
    {
        grpc.StatusCode.UNAVAILABLE: UNAVAILABLE,
        # grpcio's own (a message over a size limit, a full server) names sizes and addresses.
        grpc.StatusCode.RESOURCE_EXHAUSTED: BUSY,
        grpc.StatusCode.DEADLINE_EXCEEDED: DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED: CANCELLED,
        # grpcio answers UNKNOWN / UNIMPLEMENTED with the text of an exception a servicer raised.
        grpc.StatusCode.UNKNOWN: INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED: NOT_IMPLEMENTED,
        grpc.StatusCode.INTERNAL: INTERNAL,
        grpc.StatusCode.DATA_LOSS: INTERNAL,
    }
)

ROUTE_NOT_FOUND = "Route not found."
METHOD_NOT_ALLOWED = "Method not allowed."
INVALID_JSON = "Request body must be valid JSON."
BODY_TOO_LARGE = "Request body is too large."
INVALID_PARAMETER = "Invalid request parameter."
INVALID_PATH = "Invalid request path."

FALLBACK_BODY = b'{"message":"Internal error."}'
_DETAILS_KEY = "grpc-status-details-bin"


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_BY_CODE.get(code, 500)


@dataclass(frozen=True, slots=True)
class Validation:
    field: str
    detail: str


@dataclass(frozen=True, eq=False)
class ApiError(Exception):
    status: int
    message: str
    detail: str = ""
    validations: tuple[Validation, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    grpc_code: str = ""  # for logs and metrics only

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"message": self.message}
        if self.detail:
            out["detail"] = self.detail
        if self.validations:
            out["validations"] = [{"field": v.field, "detail": v.detail} for v in self.validations]
        return out


def _status_details(err: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed detail blob must not turn a clean error into a 500
                return None
    return None


def from_rpc_error(err: grpc.aio.AioRpcError) -> ApiError:
    return from_status(err.code(), _status_details(err), err.details())


def from_relay_status(status: status_pb2.Status) -> ApiError:
    """A call's own status from a relay batch; without details it was not written by the service's rules."""
    code = code_of(status.code)
    return from_status(code, status if status.details else None, status.message)


def from_status(code: grpc.StatusCode, status: status_pb2.Status | None, text: str | None) -> ApiError:
    detail = ""
    validations: list[Validation] = []
    headers: dict[str, str] = {}
    if status is None:
        message = _CHANNEL_MESSAGES.get(code) or text or code.name
    else:
        message = status.message or text or code.name
        for packed in status.details:
            if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                validations.extend(Validation(v.field, v.description) for v in bad.field_violations)
            elif packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                detail = info.metadata.get("detail", detail)
            elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                packed.Unpack(retry)
                delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
                headers["Retry-After"] = str(max(1, math.ceil(delay)))
    return ApiError(http_status(code), message, detail, tuple(validations), headers, grpc_code=code.name)


def error_response(err: ApiError) -> web.Response:
    try:
        body = json.dumps(err.body(), ensure_ascii=False, separators=(",", ":")).encode()
    except Exception:  # the error about the error: still JSON, never a traceback
        body = FALLBACK_BODY
    response = web.Response(status=err.status, body=body, content_type="application/json")
    response.headers.update(err.headers)
    return response


def fallback_response() -> web.Response:
    return web.Response(status=500, body=FALLBACK_BODY, content_type="application/json")
