"""The one handler behind every RPC route: HTTP request -> request message -> RPC -> HTTP response."""

from __future__ import annotations

import asyncio
import json

import grpc
from aiohttp import web

from usersecrets.gateway import errors, headers
from usersecrets.gateway.binding import ParameterError
from usersecrets.gateway.codec import CodecError
from usersecrets.gateway.config import GatewayConfig
from usersecrets.gateway.relay import RelayUnsupported
from usersecrets.gateway.routes import RpcRoute
from usersecrets.gateway.upstream import Upstream

_CHUNK = 64 * 1024
BODY_TOO_SLOW = "Request body was not received in time."


def _too_large(cap: int) -> errors.ApiError:
    return errors.ApiError(413, errors.BODY_TOO_LARGE, f"The body must not exceed {cap} bytes.")


async def read_body(request: web.Request, cap: int, seconds: float) -> bytes:
    """The body, refused as soon as it is known to pass `cap`: from Content-Length before reading, else
    while streaming (chunked bodies), so an oversized body is never held in memory. A sender too slow to
    finish within `seconds` gets 408: it cannot hold a request slot (and its buffer) for ever."""
    declared = request.content_length
    if declared is not None and declared > cap:
        raise _too_large(cap)
    buffer = bytearray()
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.content.iter_chunked(_CHUNK):
                buffer += chunk
                if len(buffer) > cap:
                    raise _too_large(cap)
    except TimeoutError:
        raise errors.ApiError(408, BODY_TOO_SLOW, f"The body must arrive within {seconds:g} seconds.") from None
    return bytes(buffer)


def render(route: RpcRoute, reply: object) -> web.Response:
    if route.success_status == 204:
        return web.Response(status=204)
    body = json.dumps(route.encode_response(reply), ensure_ascii=False, separators=(",", ":"))
    return web.Response(status=route.success_status, body=body.encode(), content_type="application/json")


async def transcode(
    request: web.Request,
    route: RpcRoute,
    values: dict[str, str],
    upstream: Upstream,
    config: GatewayConfig,
    request_id: str,
) -> web.Response:
    raw = await read_body(request, config.max_body_bytes, config.body_timeout_seconds) if route.has_body else None
    try:
        message = route.binding.build(raw, values, request.query.items())
    except CodecError as exc:
        raise errors.ApiError(400, errors.INVALID_JSON, exc.detail, grpc_code="INVALID_ARGUMENT") from None
    except ParameterError as exc:
        raise errors.ApiError(400, errors.INVALID_PARAMETER, str(exc), grpc_code="INVALID_ARGUMENT") from None
    timeout = headers.timeout_seconds(request.headers, config.default_deadline_seconds)
    metadata = headers.metadata(request.headers, request_id, request.remote)
    if upstream.relay.supported:
        try:
            result = await upstream.relay.call(route.rpc_path, message, metadata, timeout)
        except RelayUnsupported:
            pass  # nothing ran: the direct call below
        except TimeoutError:
            raise errors.from_status(grpc.StatusCode.DEADLINE_EXCEEDED, None, None) from None
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err) from None
        else:
            if result.status.code:
                raise errors.from_relay_status(result.status)
            return render(route, route.response_class.FromString(result.response))
    try:
        reply = await upstream.calls[route.rpc_path](message, metadata=metadata, timeout=timeout, wait_for_ready=False)
    except grpc.aio.AioRpcError as err:
        raise errors.from_rpc_error(err) from None
    return render(route, reply)
