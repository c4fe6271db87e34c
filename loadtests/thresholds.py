"""Pass/fail of a headless Locust run: delivery latency percentiles, failure ratio, throughput."""

from __future__ import annotations

from dataclasses import dataclass

from locust.stats import RequestStats, StatsEntry

from .users import EVENT_NAMES


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_failure_ratio: float | None = None
    min_events_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: float
    limit: float
    passed: bool

    def __str__(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        return f"{verdict} {self.name}: {self.value:,.2f} (limit {self.limit:,.2f})"


def deliveries(stats: RequestStats) -> StatsEntry:
    """All received task events (request type `SSE`, named by event type) as one entry."""
    total = StatsEntry(stats, "deliveries", "SSE", use_response_times_cache=False)
    for (name, method), entry in stats.entries.items():
        if method == "SSE" and name in EVENT_NAMES:
            total.extend(entry)
    return total


def evaluate(stats: RequestStats, limits: Thresholds) -> list[Check]:
    """The checks asked for; latency and throughput are those of deliveries (publish → SSE
    receipt), the failure ratio is over every request (publishes, opens, deliveries)."""
    delivered = deliveries(stats)
    checks: list[Check] = []
    if limits.max_p95_ms is not None:
        p95 = float(delivered.get_response_time_percentile(0.95) or 0)
        checks.append(Check("delivery p95 ms", p95, limits.max_p95_ms, p95 <= limits.max_p95_ms))
    if limits.max_p99_ms is not None:
        p99 = float(delivered.get_response_time_percentile(0.99) or 0)
        checks.append(Check("delivery p99 ms", p99, limits.max_p99_ms, p99 <= limits.max_p99_ms))
    if limits.max_failure_ratio is not None:
        ratio = stats.total.fail_ratio
        checks.append(
            Check(
                "failure ratio", ratio, limits.max_failure_ratio, ratio <= limits.max_failure_ratio
            )
        )
    if limits.min_events_per_s is not None:
        span = (delivered.last_request_timestamp or 0) - delivered.start_time
        rate = delivered.num_requests / span if span > 0 else 0.0
        checks.append(
            Check(
                "delivered events/s", rate, limits.min_events_per_s, rate >= limits.min_events_per_s
            )
        )
    return checks
