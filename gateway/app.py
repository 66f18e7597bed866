"""`create_app(config)`: the aiohttp application. State lives on typed AppKeys; the gRPC channel is a
cleanup context (opened at start, closed after the last request).

aiohttp's own router only holds one catch-all route: dispatching is ours, on the raw path, so that
percent-decoding happens once and 404 / 405 come out in the same JSON shape as every other error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from usersecrets.gateway import errors, openapi, ops, protocol_errors
from usersecrets.gateway.admission import make_admission
from usersecrets.gateway.codec import Codecs
from usersecrets.gateway.config import GatewayConfig
from usersecrets.gateway.httprule import parse
from usersecrets.gateway.metrics import GatewayMetrics
from usersecrets.gateway.middleware import REQUEST_ID, ROUTE, make_middleware
from usersecrets.gateway.pattern import PathEncodingError, Pattern
from usersecrets.gateway.router import Match, Route, Router
from usersecrets.gateway.routes import RpcRoute, build_routes
from usersecrets.gateway.transcode import transcode
from usersecrets.gateway.upstream import Upstream
from usersecrets.v1 import usersecrets_pb2

SERVICE = usersecrets_pb2.DESCRIPTOR.services_by_name["UserSecretsService"]


@dataclass(frozen=True, slots=True)
class Local:
    """An endpoint the gateway answers itself."""

    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]


Endpoint = RpcRoute | Local

CONFIG = web.AppKey("config", GatewayConfig)
METRICS = web.AppKey("metrics", GatewayMetrics)
ROUTER = web.AppKey("router", Router[Endpoint])
RPC_ROUTES = web.AppKey("rpc_routes", tuple[RpcRoute, ...])
UPSTREAM = web.AppKey("upstream", Upstream)
OPENAPI = web.AppKey("openapi", bytes)


async def _healthz(request: web.Request) -> web.Response:
    return await ops.healthz(request.app[UPSTREAM], request.app[CONFIG])


async def _metrics(request: web.Request) -> web.Response:
    return ops.metrics(request.app[METRICS])


async def _openapi(request: web.Request) -> web.Response:
    return ops.openapi(request.app[OPENAPI])


def _local(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Route[Endpoint]:
    return Route("GET", Pattern.compile(parse(path)), Local(handler))


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    upstream = Upstream.connect(app[CONFIG], app[RPC_ROUTES], app[METRICS].relay_batch_calls.observe)
    app[UPSTREAM] = upstream
    yield
    await upstream.channel.close(grace=None)


def _raw_path(request: web.Request) -> str:
    target = request.raw_path.split("?", 1)[0]
    # An absolute-form target (`GET http://host/path`) carries the path after the authority.
    return target if target.startswith("/") else request.rel_url.raw_path


async def dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app
    try:
        resolved = app[ROUTER].resolve(request.method, _raw_path(request))
    except PathEncodingError as exc:
        raise errors.ApiError(400, errors.INVALID_PATH, str(exc), grpc_code="INVALID_ARGUMENT") from None
    if resolved.match is Match.NONE:
        raise errors.ApiError(404, errors.ROUTE_NOT_FOUND, grpc_code="NOT_FOUND")
    if resolved.match is Match.PARTIAL:
        allow = ", ".join(resolved.allow)
        raise errors.ApiError(405, errors.METHOD_NOT_ALLOWED, headers={"Allow": allow}, grpc_code="UNIMPLEMENTED")
    assert resolved.route is not None and resolved.values is not None
    endpoint = resolved.route.endpoint
    if isinstance(endpoint, Local):
        request[ROUTE] = resolved.route.pattern.template.source
        return await endpoint.handler(request)
    request[ROUTE] = endpoint.template.source
    return await transcode(request, endpoint, resolved.values, app[UPSTREAM], app[CONFIG], request[REQUEST_ID])


async def _expect_continue(request: web.Request) -> None:
    # Only invite a body we would accept; otherwise the handler answers 413 before any of it is sent.
    declared = request.content_length
    if request.version >= (1, 1) and (declared is None or declared <= request.app[CONFIG].max_body_bytes):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def create_app(config: GatewayConfig) -> web.Application:
    protocol_errors.install()
    codecs = Codecs()
    rpc_routes = tuple(build_routes(SERVICE, codecs))
    metrics = GatewayMetrics.create()
    app = web.Application(
        middlewares=[make_middleware(metrics), make_admission(config.max_concurrent_requests)],
        client_max_size=config.max_body_bytes,
        # aiohttp's parser enforces these before any handler runs (answering 400 and closing).
        handler_args={
            "max_headers": config.max_headers,
            "max_field_size": config.max_header_bytes,
            "max_line_size": config.max_header_bytes,
        },
    )
    app[CONFIG] = config
    app[METRICS] = metrics
    app[RPC_ROUTES] = rpc_routes
    local = [
        _local("/healthz", _healthz),
        _local("/metrics", _metrics),
        _local(openapi.PATH, _openapi),
    ]
    app[ROUTER] = Router([*local, *(Route(r.http_method, r.pattern, r) for r in rpc_routes)])
    app[OPENAPI] = json.dumps(openapi.document(rpc_routes), indent=2).encode()
    app.cleanup_ctx.append(_upstream_ctx)
    app.router.add_route("*", "/{tail:.*}", dispatch, expect_handler=_expect_continue)
    return app
