"""gRPC status codes by number, as they travel in a `google.rpc.Status` (server and gateway alike)."""

from __future__ import annotations

from types import MappingProxyType

import grpc

BY_NUMBER = MappingProxyType({code.value[0]: code for code in grpc.StatusCode})


def code_of(number: int) -> grpc.StatusCode:
    """The code for a status number; one this grpcio does not know is UNKNOWN."""
    return BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
