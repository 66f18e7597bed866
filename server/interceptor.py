"""The one wrapper around every RPC of ours: request id, authentication, error mapping, access log, metrics.

Health and reflection pass through untouched. The caller's Principal reaches the servicer through a
context variable set in the same task that runs the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from usersecrets.common.grpc_codes import code_of
from usersecrets.common.jsonlog import REQUEST_ID, event
from usersecrets.server import grpc_errors
from usersecrets.server.errors import RateLimited, ServiceError, Unauthenticated
from usersecrets.server.metrics import ServerMetrics
from usersecrets.server.model import Principal
from usersecrets.server.ratelimit import TokenBucketLimiter

PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")
# Health and reflection need no token; a relay batch is not a call itself: each call in it runs the pipeline.
PASS_THROUGH_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.", "/usersecrets.v1.Relay/")
MISSING_TOKEN = 'Header "Coder-Session-Token" (or "Authorization: Bearer <token>") must be provided.'  # noqa: S105
MAX_REQUEST_ID = 128

log = logging.getLogger("usersecrets.server.access")


def current_principal() -> Principal:
    return PRINCIPAL.get()


def token_from_metadata(metadata: Mapping[str, str]) -> str:
    token = metadata.get("coder-session-token", "")
    if token:
        return token
    scheme, _, credentials = metadata.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    raise Unauthenticated(MISSING_TOKEN)


def _request_id(metadata: Mapping[str, str]) -> str:
    given = metadata.get("x-request-id", "")
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return uuid.uuid4().hex


class DeadlinePassed(Exception):
    """Raised by a call runner whose own deadline passed while the call was running."""


DEADLINE_MESSAGE = "Deadline exceeded."


class CallPipeline:
    """What every call of ours goes through, however it arrived (its own RPC or an item of a relay batch):
    request id, authentication, rate limit, deadline check, error mapping, access log, metrics."""

    def __init__(
        self,
        authenticate: Callable[[str], Awaitable[Principal]],
        metrics: ServerMetrics,
        limiter: TokenBucketLimiter | None = None,
    ) -> None:
        self._authenticate = authenticate
        self._metrics = metrics
        self._limiter = limiter

    async def run(
        self,
        short: str,
        metadata: Mapping[str, str],
        time_remaining: Callable[[], float | None],
        invoke: Callable[[], Awaitable[Any]],
        deadline: float | None = None,
    ) -> tuple[Any, status_pb2.Status | None]:
        """(response, None) on success, (None, status) on a failure the caller is told about.

        `deadline` (event-loop time) cuts the whole call, authentication included, for callers whose transport
        does not (a relay batch); grpc enforces a direct call's deadline itself."""
        REQUEST_ID.set(_request_id(metadata))
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        user_id = ""
        self._metrics.in_flight.inc()
        scope = asyncio.timeout_at(deadline) if deadline is not None else None
        try:
            async with scope or contextlib.nullcontext():
                principal = await self._authenticate(token_from_metadata(metadata))
                user_id = principal.user_id
                if self._limiter is not None and (wait := self._limiter.acquire(principal.token_id)):
                    raise RateLimited(wait)
                PRINCIPAL.set(principal)
                remaining = time_remaining()  # after authentication, which may have waited on Redis
                if remaining is not None and remaining <= 0:
                    # The caller has given up: doing the work now could store what it was told had failed.
                    raise DeadlinePassed
                return await invoke(), None
        except ServiceError as exc:
            status = grpc_errors.to_proto(exc)
            code = code_of(status.code)
            return None, status
        except (DeadlinePassed, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and (scope is None or not scope.expired()):
                code = grpc.StatusCode.INTERNAL
                return None, self._internal(short)
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            # No details: the caller sees the same status as a deadline that grpc itself enforces.
            return None, status_pb2.Status(code=code.value[0], message=DEADLINE_MESSAGE)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            return None, self._internal(short)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.in_flight.dec()
            self._metrics.observe_call(short, code.name, elapsed)
            event(log, "rpc", method=short, code=code.name, ms=round(elapsed * 1000, 3), user_id=user_id)

    @staticmethod
    def _internal(short: str) -> status_pb2.Status:
        """Called from an except clause. exc_info logs the type and frames only (see common/jsonlog.py): the
        exception's text could quote data."""
        event(log, "internal error", logging.ERROR, method=short, error="unhandled exception")
        log.debug("internal error", exc_info=True, extra={"fields": {"method": short}})
        return grpc_errors.internal_proto()


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, pipeline: CallPipeline) -> None:
        self._pipeline = pipeline
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method  # type: ignore[attr-defined]
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or method.startswith(PASS_THROUGH_PREFIXES):
            return handler
        wrapped = self._wrap(method, handler)
        # One wrapper per method of ours (a fixed, small set), built on its first call.
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner = handler.unary_unary
        short = method.rsplit("/", 1)[-1]
        run = self._pipeline.run

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            response, status = await run(short, metadata, context.time_remaining, lambda: inner(request, context))
            if status is None:
                return response
            if not status.details:  # a deadline or an internal error: a plain status, as grpc itself sends
                await context.abort(code_of(status.code), status.message)
            await context.abort_with_status(rpc_status.to_status(status))

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
