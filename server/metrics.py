"""Prometheus metrics of one server instance, on its own registry (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.calls = Counter(
            "usersecrets_grpc_calls",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "usersecrets_grpc_call_seconds",
            "RPC latency by method",
            ["method"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.in_flight = Gauge("usersecrets_grpc_in_flight", "RPCs in progress", registry=self.registry)
        self.redis_up = Gauge("usersecrets_redis_up", "1 while Redis answers PING", registry=self.registry)
        self._children: dict[tuple[str, ...], Any] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """One finished call. Methods and codes are a small fixed set: their labelled children are kept, which
        spares prometheus_client's label lookup on every call."""
        counter = self._children.get((method, code))
        if counter is None:
            counter = self._children[method, code] = self.calls.labels(method, code)
        histogram = self._children.get((method,))
        if histogram is None:
            histogram = self._children[(method,)] = self.latency.labels(method)
        counter.inc()
        histogram.observe(seconds)
