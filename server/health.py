"""grpc.health.v1: SERVING while Redis answers, NOT_SERVING while it does not or while the server drains."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health, health_pb2
from redis.asyncio import Redis

from usersecrets.common.jsonlog import event
from usersecrets.server.metrics import ServerMetrics
from usersecrets.v1 import usersecrets_pb2

SERVICE_NAME = usersecrets_pb2.DESCRIPTOR.services_by_name["UserSecretsService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

log = logging.getLogger("usersecrets.server.health")


class RedisHealth:
    """Pings Redis every `interval` seconds and mirrors the answer into the health service."""

    def __init__(self, redis: Redis, metrics: ServerMetrics, interval: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self._redis = redis
        self._metrics = metrics
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._serving: bool | None = None
        self._draining = False

    async def _set(self, serving: bool) -> None:
        status = SERVING if serving and not self._draining else NOT_SERVING
        self._metrics.redis_up.set(1 if serving else 0)
        if serving != self._serving:
            event(log, "redis reachable" if serving else "redis unreachable", logging.WARNING)
        self._serving = serving
        for name in ("", SERVICE_NAME):
            await self.servicer.set(name, status)

    async def probe(self) -> bool:
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=max(self._interval, 0.5))
        except Exception:  # any failure to answer means "not serving"; the type is enough
            await self._set(False)
            return False
        await self._set(True)
        return True

    async def _loop(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self._interval)

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._loop(), name="redis-health")

    async def drain(self) -> None:
        """From now on report NOT_SERVING, so load balancers stop sending work."""
        self._draining = True
        await self.servicer.enter_graceful_shutdown()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
