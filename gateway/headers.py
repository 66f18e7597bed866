"""What travels from HTTP headers to gRPC metadata and deadlines.

Header values that are not printable ASCII are dropped rather than forwarded: gRPC metadata cannot carry
them, and a token that is not ASCII is malformed anyway (the server answers 401 for the missing token).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from usersecrets.gateway.errors import ApiError

# HTTP header -> metadata key, forwarded as is when present.
FORWARDED = (
    ("Coder-Session-Token", "coder-session-token"),
    ("Authorization", "authorization"),
    ("traceparent", "traceparent"),
    ("tracestate", "tracestate"),
)
REQUEST_ID_HEADER = "X-Request-Id"
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")
# grpc-gateway's (and gRPC's) timeout format: up to 8 digits and a unit.
_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])\Z")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def request_id(headers: Mapping[str, str]) -> str:
    """The caller's X-Request-Id when it is a sane token (it lands in logs), else a new uuid4 hex."""
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def metadata(headers: Mapping[str, str], rid: str, peer: str | None) -> tuple[tuple[str, str], ...]:
    out = [("x-request-id", rid)]
    for header, key in FORWARDED:
        value = headers.get(header)
        if value is not None and _PRINTABLE.match(value):
            out.append((key, value))
    if peer and _PRINTABLE.match(peer):
        out.append(("x-forwarded-for", peer))
    return tuple(out)


def timeout_seconds(headers: Mapping[str, str], default: float) -> float:
    raw = headers.get("Grpc-Timeout")
    if raw is None:
        return default
    found = _TIMEOUT.match(raw.strip())
    if found is None:
        raise ApiError(
            400,
            "Invalid Grpc-Timeout header.",
            'It must be up to 8 digits and a unit of H, M, S, m, u or n, like "5S" or "100m".',
            grpc_code="INVALID_ARGUMENT",
        )
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
