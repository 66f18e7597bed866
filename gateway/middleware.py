"""The one middleware around every request: request id, errors as JSON, metrics, one access log line.

Whatever goes wrong below it, the client gets Coder's JSON error shape: an ApiError as itself, an aiohttp
HTTPException by its status, anything else as the fallback 500 body (the exception is logged by type and
frames only; its text could quote request data).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from usersecrets.gateway import errors, headers
from usersecrets.gateway.metrics import UNMATCHED, GatewayMetrics

ACCESS_LOGGER = "usersecrets.gateway.access"
LOGGER = "usersecrets.gateway"
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", str)  # the matched template, for metrics and logs
GRPC_CODE = web.RequestKey("grpc_code", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# HTTP allows any token as a method; only these become metric labels, so a scanner cannot grow the series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _as_api_error(exc: web.HTTPException) -> errors.ApiError:
    return errors.ApiError(exc.status, exc.reason or "Error.", grpc_code="")


def make_middleware(metrics: GatewayMetrics) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    access = logging.getLogger(ACCESS_LOGGER)
    log = logging.getLogger(LOGGER)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = headers.request_id(request.headers)
        request[REQUEST_ID] = rid
        started = time.perf_counter()
        status = 499  # stays so only if the client went away mid-request
        metrics.in_flight.inc()
        try:
            try:
                response = await handler(request)
            except errors.ApiError as err:
                request[GRPC_CODE] = err.grpc_code
                response = errors.error_response(err)
            except web.HTTPException as exc:
                response = errors.error_response(_as_api_error(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unhandled error", extra={"fields": {"request_id": rid}})
                response = errors.fallback_response()
            response.headers[headers.REQUEST_ID_HEADER] = rid
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            metrics.in_flight.dec()
            route = request.get(ROUTE, UNMATCHED)
            method = request.method if request.method in KNOWN_METHODS else "OTHER"
            metrics.observe(method, route, status, elapsed)
            access.info(
                "request",
                extra={
                    "fields": {
                        "request_id": rid,
                        "method": method,
                        "route": route,
                        "status": status,
                        "grpc_code": request.get(GRPC_CODE, ""),
                        "duration_ms": round(elapsed * 1000, 3),
                        "remote": request.remote,
                        "user_agent": request.headers.get("User-Agent", ""),
                    }
                },
            )

    return observe
