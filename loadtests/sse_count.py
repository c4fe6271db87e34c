"""What the bench's load generators receive: thousands of streams opened with the counting
client of `harness.wire.counting`, each frame's publish timestamp taken from the `"t":<time_ns>`
of its payload; that is the event count and the latency. (The Locust users, which are about
realism rather than peak rate, parse every event with `harness.wire.sse`.)
"""

from __future__ import annotations

import array
import asyncio
import re
import resource
import time
from typing import Any

from harness.wire.counting import CountingConnection, open_counting

_STAMP = re.compile(rb'"t":(\d+)')


def percentiles(samples_ns: array.array[int] | list[int]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (nearest rank), plus the sample count."""
    ordered = sorted(samples_ns)
    if not ordered:
        return {"count": 0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1] / 1e6,
    }


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (up to the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


class Receipts:
    """What every SSE connection of this process received."""

    def __init__(self, latencies: bool) -> None:
        self.keep_latencies = latencies
        self.reset()
        self.closed = 0

    def reset(self) -> None:
        self.cpu_at_reset = time.process_time()
        self.events = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: array.array[int] = array.array("q")

    def lost(self) -> None:
        self.closed += 1

    def scan(self, frames: bytes) -> None:
        stamps = _STAMP.findall(frames)
        if not stamps:
            return
        now_ns = time.time_ns()
        now = time.monotonic()
        if not self.events:
            self.first = now
        self.last = now
        self.events += len(stamps)
        if self.keep_latencies:
            self.latencies.extend(now_ns - int(stamp) for stamp in stamps)

    def summary(self) -> dict[str, Any]:
        span = self.last - self.first
        return {
            "events": self.events,
            "seconds": span,
            "closed": self.closed,
            "per_second": self.events / span if span > 0 else 0.0,
            "cpu_seconds": time.process_time() - self.cpu_at_reset,
            "latency_ms": percentiles(self.latencies),
        }


async def open_many(
    urls: list[str], token: str | None, count: int, receipts: Receipts, open_concurrency: int = 64
) -> tuple[list[CountingConnection], list[str]]:
    """`count` streams over `urls` (round-robin), `open_concurrency` at a time; returns the
    open ones and the errors of the others."""
    raise_nofile(count + 256)
    gate = asyncio.Semaphore(open_concurrency)
    conns: list[CountingConnection] = []
    errors: list[str] = []

    async def one(url: str) -> None:
        async with gate:
            try:
                conns.append(await open_counting(url, token, receipts))
            except (OSError, TimeoutError) as error:
                errors.append(f"{type(error).__name__}: {error}")

    await asyncio.gather(*(one(urls[i % len(urls)]) for i in range(count)))
    return conns, errors
