"""A bound on the API requests one gateway process handles at once.

Each admitted request may hold a body of up to `max_body_bytes` and a gRPC call, so without a bound a crowd
of slow or hostile clients could take memory without limit. Past the bound a request is answered 503 with
`Retry-After` at once, before its body is read. The gateway's own GET endpoints (health, metrics, OpenAPI)
are not counted: an overloaded gateway must still be observable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from usersecrets.gateway import errors, openapi

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AT_CAPACITY = "The gateway is handling too many requests. Try again later."
NOT_COUNTED = frozenset({"/healthz", "/metrics", openapi.PATH})


def make_admission(limit: int) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    assert limit > 0
    admitted = 0  # per app: one event loop, so a plain counter is exact

    @web.middleware
    async def admission(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal admitted
        if request.path in NOT_COUNTED:
            return await handler(request)
        if admitted >= limit:
            raise errors.ApiError(503, AT_CAPACITY, headers={"Retry-After": "1"}, grpc_code="UNAVAILABLE")
        admitted += 1
        try:
            return await handler(request)
        finally:
            admitted -= 1

    return admission
