"""The explorer's model of the contract: what each stream must, may and must not receive.

Pure bookkeeping, no I/O, so it is tested on its own. Times are `time.monotonic()` seconds.
What the model can tell from the client side is only what real time orders: an event
acknowledged before another was sent precedes it in every stream (SPEC sse/4.6/8), an event
sent after a stream's headers arrived is on it (sse/4.5/6), an event acknowledged before the
request was sent is not on a live-only stream (sse/4.10/1). Events concurrent with those
instants may go either way; the model lets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Finding:
    """A disagreement with the model, under the requirement it breaks."""

    requirement: str
    what: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.requirement}: {self.what}: expected {self.expected}, got {self.actual}"


class ModelViolation(AssertionError):
    """Raised inside the state machine so that Hypothesis shrinks the sequence."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(str(finding))


@dataclass(slots=True)
class Sent:
    """One published event."""

    payload: str
    workflow: str
    instance: int
    sent_at: float
    acked_at: float = float("inf")


@dataclass(slots=True)
class Workflow:
    id: str
    parent: str | None
    completed: str | None = None  # terminal status, once completed


@dataclass(slots=True)
class Received:
    """A data event as a stream received it."""

    payload: str
    id: str | None
    at: float


@dataclass(slots=True)
class Expectation:
    """What one stream must (`must`), must not (`forbidden`) and may (everything else of its
    scope) receive; `scope` is what it may carry at all."""

    requirement: str  # the requirement a miss on this stream breaks
    must: set[str] = field(default_factory=set)
    forbidden: set[str] = field(default_factory=set)


def tree(workflows: Iterable[Workflow], root: str) -> set[str]:
    """`root` and all its descendants."""
    children: dict[str, list[str]] = {}
    for wf in workflows:
        if wf.parent is not None:
            children.setdefault(wf.parent, []).append(wf.id)
    found, todo = set(), [root]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def live_expectation(
    sent: Iterable[Sent], scope: set[str], requested_at: float, headers_at: float, rid: str
) -> Expectation:
    """A stream opened without a cursor: what is sent after its headers is on it, what was
    acknowledged before the request is not."""
    expectation = Expectation(rid)
    for event in sent:
        if event.workflow not in scope:
            continue
        if event.sent_at > headers_at:
            expectation.must.add(event.payload)
        elif event.acked_at < requested_at:
            expectation.forbidden.add(event.payload)
    return expectation


def resume_expectation(
    sent: Iterable[Sent],
    scope: set[str],
    cursor: Sent,
    cursor_received_at: float,
    seen_before: set[str],
    rid: str,
) -> Expectation:
    """A stream resumed after `cursor` (received at `cursor_received_at` on an earlier stream
    that had received `seen_before` up to it): what was sent after the cursor was received is
    on it; the cursor, what the earlier stream had and what preceded the cursor are not."""
    expectation = Expectation(rid, forbidden={cursor.payload, *seen_before})
    for event in sent:
        if event.workflow not in scope or event is cursor:
            continue
        if event.sent_at > cursor_received_at:
            expectation.must.add(event.payload)
        elif event.acked_at < cursor.sent_at:
            expectation.forbidden.add(event.payload)
    return expectation


def after_gap(expectation: Expectation, sent: Iterable[Sent], retained_since: float) -> None:
    """After `gap` the server replays whatever it retains: nothing is forbidden any more, and
    only what is surely retained (sent after `retained_since`) must come."""
    young = {e.payload for e in sent if e.sent_at > retained_since}
    expectation.forbidden.clear()
    expectation.must &= young


def check_stream(
    received: Sequence[Received],
    by_payload: dict[str, Sent],
    scope: set[str],
    expectation: Expectation,
    *,
    complete: bool,
    order_requirement: str = "sse/4.6/8",
) -> Finding | None:
    """The first disagreement of what a stream received with its expectation, or None.
    `complete`: the stream had all the time it needs, so every `must` event should be there."""
    seen: dict[str, int] = {}
    for n, got in enumerate(received):
        event = by_payload.get(got.payload)
        if event is None or event.workflow not in scope:
            return Finding(
                "sse/4.6/7", "an event outside the stream's workflows", "none", repr(got.payload)
            )
        if got.payload in seen:
            return Finding(
                expectation.requirement,
                "an event delivered twice",
                "each event once",
                f"{got.payload!r} at positions {seen[got.payload]} and {n}",
            )
        if got.payload in expectation.forbidden:
            return Finding(
                expectation.requirement,
                "an event that precedes the stream's start (or its cursor)",
                "not delivered",
                repr(got.payload),
            )
        seen[got.payload] = n
    for a in received:
        first = by_payload[a.payload]
        for b in received:
            second = by_payload[b.payload]
            if first.acked_at < second.sent_at and seen[b.payload] < seen[a.payload]:
                return Finding(
                    order_requirement,
                    "order of events",
                    f"{a.payload!r} (acknowledged before {b.payload!r} was sent) first",
                    f"{b.payload!r} at {seen[b.payload]}, {a.payload!r} at {seen[a.payload]}",
                )
    if complete:
        missing = sorted(expectation.must - seen.keys(), key=lambda p: by_payload[p].sent_at)
        if missing:
            return Finding(
                expectation.requirement,
                "events the stream must carry",
                f"all {len(expectation.must)}",
                f"{len(missing)} missing: {missing[:5]}",
            )
    return None
