"""Prometheus metrics: one registry per server process, built here and passed to who counts.

Request counts and latencies are recorded for every request, from the request-log hook, with
the route (never the raw path a client sent) as label, so label values stay few.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
KNOWN_ROUTES = {"/", "/symbolicate/v4", "/symbolicate/v5", "/__lbheartbeat__", "/__heartbeat__",
                "/__version__", "/metrics"}


class Metrics:
    """The metrics of one server; ``prefix`` is ``symserver`` or ``diskcache``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        self.requests = self.counter("requests", "HTTP requests answered", ["route", "method", "status"])
        self.latency = self.histogram("request_seconds", "Time to answer an HTTP request", ["route"])
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def counter(self, name: str, documentation: str, labels: list[str] | None = None) -> Counter:
        return Counter(f"{self.prefix}_{name}", documentation, labels or [], registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: list[str] | None = None) -> Histogram:
        return Histogram(f"{self.prefix}_{name}", documentation, labels or [], registry=self.registry,
                         buckets=LATENCY_BUCKETS)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> Gauge:
        gauge = Gauge(f"{self.prefix}_{name}", documentation, registry=self.registry)
        gauge.set_function(read)
        return gauge

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        route = path if path in KNOWN_ROUTES else "other"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() looks its child up under a lock: once per kind of request
            if len(self._children) > 1000:  # (methods are the client's choice: stay bounded)
                self._children.clear()
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def record_request(settings: dict[str, Any], path: str, method: str, status: int, seconds: float) -> None:
    metrics = settings.get("metrics")
    if metrics is not None:
        metrics.observe_request(path, method, status, seconds)
