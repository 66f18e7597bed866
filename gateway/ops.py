"""The gateway's own endpoints: /healthz, /metrics, /api/v2/openapi.json."""

from __future__ import annotations

import json

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2

from usersecrets.gateway.config import GatewayConfig
from usersecrets.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from usersecrets.gateway.upstream import Upstream

NOT_SERVING = "The secrets service is not serving."


async def healthz(upstream: Upstream, config: GatewayConfig) -> web.Response:
    """200 only when the server says SERVING (it reports NOT_SERVING while Redis is down)."""
    try:
        reply = await upstream.health.Check(
            health_pb2.HealthCheckRequest(service=""),
            timeout=config.health_timeout_seconds,
            wait_for_ready=False,
        )
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.aio.AioRpcError as err:
        status = "UNREACHABLE" if err.code() != grpc.StatusCode.UNIMPLEMENTED else "UNKNOWN"
    if status == "SERVING":
        return _json({"status": status}, 200)
    return _json({"message": NOT_SERVING, "status": status}, 503)


def _json(body: dict[str, str], status: int) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json"
    )


def metrics(registry: GatewayMetrics) -> web.Response:
    response = web.Response(body=registry.render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def openapi(document: bytes) -> web.Response:
    return web.Response(body=document, content_type="application/json")
