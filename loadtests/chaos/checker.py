"""Compare what the servers acknowledged with what every subscriber received (pure).

Per subscriber of a stream: an acknowledged event of the stream it never received is *lost*; an
event received twice is *duplicated*; an acknowledged event of a producer received after an
acknowledged one of the same producer with a higher `seq` is *reordered*. An unacknowledged
event may arrive late: a publish the producer gave up on (a paused instance) can still complete
after the producer's next one, which is why a worker that needs order waits for the ack.
`gap` events are counted too. Per fault: the time to
recover is, for the subscriber that took longest, the time from the fault to the first event it
received that was published after the fault; p50/p99 are taken over the faults of one kind.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .load import Record


@dataclass(slots=True)
class StreamCheck:
    stream: str
    subscribers: int = 0
    acked: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    gaps: int = 0


@dataclass(slots=True)
class Verdict:
    streams: list[StreamCheck]
    total: StreamCheck
    publish_attempts: int
    publish_errors: int
    publish_errors_in_faults: int
    recovery: dict[str, dict[str, float | int | None]]  # kind -> n, p50, p99, max, unrecovered
    per_fault: list[dict[str, Any]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # a few lost/dup/reordered, for humans

    @property
    def ok(self) -> bool:
        return self.total.lost == self.total.duplicated == self.total.reordered == 0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def check(record: Record, faults: list[dict[str, Any]], *, grace: float = 10.0) -> Verdict:
    """`faults` are the applied faults: `at` and `until` (seconds since `record.t0`), `kind`.
    A publish error counts as "during a fault" from the fault until `grace` s after it ended."""
    by_stream: dict[str, StreamCheck] = {}
    acked_of: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for key, (stream, _) in record.acked.items():
        acked_of[stream].add(key)
    examples: list[str] = []
    for name, deliveries in record.deliveries.items():
        stream = record.stream_of[name]
        row = by_stream.setdefault(stream, StreamCheck(stream, acked=len(acked_of[stream])))
        row.subscribers += 1
        row.delivered += len(deliveries)
        row.gaps += len(record.gaps.get(name, []))
        counts = Counter((p, s) for _, p, s, _ in deliveries)
        dups = [k for k, n in counts.items() if n > 1]
        row.duplicated += sum(counts[k] - 1 for k in dups)
        lost = sorted(acked_of[stream] - counts.keys())
        row.lost += len(lost)
        highest: dict[str, int] = {}
        acked = acked_of[stream]
        for _, producer, seq, cursor in deliveries:
            if (producer, seq) not in acked:
                continue
            if seq < highest.get(producer, 0):
                row.reordered += 1
                if len(examples) < 10:
                    examples.append(f"{name}: reordered {producer}:{seq} at id {cursor}")
            highest[producer] = max(highest.get(producer, 0), seq)
        for what, keys in (("lost", lost), ("duplicated", dups)):
            examples.extend(
                f"{name}: {what} {p}:{s}" for p, s in keys[: max(0, 10 - len(examples))]
            )
    streams = sorted(by_stream.values(), key=lambda r: r.stream)
    total = StreamCheck("total")
    for row in streams:
        for attr in (
            "subscribers",
            "acked",
            "delivered",
            "lost",
            "duplicated",
            "reordered",
            "gaps",
        ):
            setattr(total, attr, getattr(total, attr) + getattr(row, attr))
    in_faults = sum(
        1
        for at, _, _ in record.publish_errors
        if any(f["at"] <= at <= f["until"] + grace for f in faults)
    )
    per_fault = [dict(f, recovery=_recovery(record, f["at"])) for f in faults]
    return Verdict(
        streams=streams,
        total=total,
        publish_attempts=len(record.sent),
        publish_errors=len(record.publish_errors),
        publish_errors_in_faults=in_faults,
        recovery=_summarise(per_fault),
        per_fault=per_fault,
        examples=examples,
    )


def _recovery(record: Record, at: float) -> float | None:
    """Seconds from `at` until every subscriber received an event published after `at`."""
    worst = 0.0
    for deliveries in record.deliveries.values():
        start = bisect.bisect_left(deliveries, at, key=lambda d: d[0])
        first = next(
            (
                when
                for when, producer, seq, _ in itertools.islice(deliveries, start, None)
                if record.sent.get((producer, seq), -1.0) >= at
            ),
            None,
        )
        if first is None:
            return None
        worst = max(worst, first - at)
    return round(worst, 3)


def _summarise(per_fault: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fault in per_fault:
        # Killing the stream's raft leader costs an election (seconds); a follower does not.
        leader = fault.get("leader")
        role = "" if leader is None else " (stream leader)" if leader else " (follower)"
        kinds[fault["kind"] + role].append(fault)
    summary: dict[str, dict[str, float | int | None]] = {}
    for kind, faults in sorted(kinds.items()):
        times = [f["recovery"] for f in faults if f["recovery"] is not None]
        summary[kind] = {
            "n": len(faults),
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "max": max(times) if times else None,
            "unrecovered": len(faults) - len(times),
        }
    return summary
