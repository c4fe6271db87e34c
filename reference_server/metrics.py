"""Prometheus metrics, one registry per server so several servers can live in one process."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from .events import StreamEventType

# `_created` series double the exposition for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """With `multiprocess_dir` (the PROMETHEUS_MULTIPROC_DIR of `serve --workers N`), every
    worker writes its samples there and `render` sums them over the live workers: a scrape
    answered by any worker shows the whole server."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_published = Counter(
            "flovyn_stream_events_published", "Events accepted and handed to the bus", ["type"],
            registry=r,
        )  # fmt: skip
        self.publish_errors = Counter(
            "flovyn_stream_publish_errors", "Accepted events the bus could not carry", registry=r
        )
        self.subscribers_active = Gauge(
            "flovyn_stream_subscribers_active", "Open SSE streams", ["kind"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.events_delivered = Counter(
            "flovyn_stream_events_delivered", "Events written to SSE subscribers", ["type"],
            registry=r,
        )  # fmt: skip
        self.evictions = Counter(
            "flovyn_stream_subscriber_evictions", "Slow subscribers disconnected", registry=r
        )
        self.sse_responses = Counter(
            "flovyn_stream_sse_responses", "SSE requests by response status", ["status"],
            registry=r,
        )  # fmt: skip
        self.grpc_requests = Counter(
            "flovyn_stream_grpc_requests", "StreamTaskData calls by status code", ["code"],
            registry=r,
        )  # fmt: skip
        self.connections_closed = Counter(
            "flovyn_stream_http_connections_closed",
            "HTTP connections the server closed before a request: head timeout or the limit"
            " on unauthenticated connections",
            ["reason"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "flovyn_stream_delivery_latency_seconds",
            "Time from the server accepting an event to writing it to a subscriber",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Bound once: `labels()` on the hot path costs a lookup and a lock per call.
        self.delivered_by_type = {t: self.events_delivered.labels(t.name) for t in StreamEventType}
        for kind in ("workflow", "consolidated", "task"):
            self.subscribers_active.labels(kind)

    def render(self) -> bytes:
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
