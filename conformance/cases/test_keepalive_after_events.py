"""SPEC §4.7: the keep-alive cadence holds after events too, not only on an idle stream."""

from __future__ import annotations

import time

from conformance import requirement
from conformance.checks import Band, Mismatch, expect
from conformance.fixtures import Facts
from conformance.wire import new_id
from harness.sse_client import SSEStream, StreamClosed
from harness.world import TenantWorld


async def _next_comment(stream: SSEStream, after: int, deadline: float) -> float | None:
    """When the comment after the first `after` ones arrived, or None if none by `deadline`."""
    while len(stream.comments) <= after:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            await stream.wait_comment(remaining)
        except (TimeoutError, StreamClosed):
            if len(stream.comments) <= after:
                return None
    return stream.comments[after].received_at


@requirement("sse/4.7/2")
async def test_keepalives_go_on_after_events(world: TenantWorld, facts: Facts) -> None:
    interval = facts.keepalive_interval
    band = Band(0.0, 1.25 * interval + 0.25, 2 * interval + 0.5)
    facts.require_wait(2 * interval, "two keep-alive intervals")
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await pub.token("one event", workflow_id=wf, task_id=new_id())
        event = await stream.next_event()
        expect("the event", event.data, "one event")
        seen = len(stream.comments)
        first = await _next_comment(stream, seen, event.received_at + band.late)
        if first is None:
            raise Mismatch(
                "first comment after an event", f"within {band.high:.2f} s", "none in time"
            )
        second = await _next_comment(stream, seen + 1, first + band.late)
        if second is None:
            raise Mismatch(
                "second comment after an event", f"within {band.high:.2f} s", "none in time"
            )
    band.check("first comment after the event", first - event.received_at)
    band.check("second comment after the first", second - first)
