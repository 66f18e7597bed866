"""Prometheus metrics of one gateway app, in the app's own registry (no process-global collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Route label for requests that matched no route: raw paths would make the label set unbounded.
UNMATCHED = "unmatched"


@dataclass(frozen=True, slots=True)
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    in_flight: Gauge
    relay_batch_calls: Histogram
    _children: dict[tuple[object, ...], Any] = field(default_factory=dict)

    @classmethod
    def create(cls) -> GatewayMetrics:
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            requests=Counter(
                "usersecrets_gateway_requests",
                "HTTP requests answered, by method, route template and status.",
                ("method", "route", "status"),
                registry=registry,
            ),
            latency=Histogram(
                "usersecrets_gateway_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template.",
                ("method", "route"),
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                registry=registry,
            ),
            in_flight=Gauge(
                "usersecrets_gateway_requests_in_flight",
                "HTTP requests being answered now.",
                registry=registry,
            ),
            relay_batch_calls=Histogram(
                "usersecrets_gateway_relay_batch_calls",
                "Calls carried by each relay batch sent to the server.",
                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                registry=registry,
            ),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # The label values are bounded (known methods, route templates, statuses): so is this cache of children,
        # which spares prometheus_client's label lookup on every request.
        counter = self._children.get((method, route, status))
        if counter is None:
            counter = self._children[method, route, status] = self.requests.labels(method, route, str(status))
        histogram = self._children.get((method, route))
        if histogram is None:
            histogram = self._children[method, route] = self.latency.labels(method, route)
        counter.inc()
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
