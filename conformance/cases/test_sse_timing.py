"""SPEC §4.7 to 4.8: keep-alive comments and the idle timeout, against the declared timings."""

from __future__ import annotations

import asyncio
import time

from conformance import requirement
from conformance.checks import Band, Mismatch, expect
from conformance.fixtures import Facts
from conformance.wire import new_id
from harness.sse_client import SSEStream, StreamClosed
from harness.wire.sse import SSEComment
from harness.world import TenantWorld


async def _comment(stream: SSEStream, n: int, deadline: float) -> SSEComment | None:
    """The n-th comment (1-based) of the stream, or None if none by `deadline` (monotonic)."""
    while len(stream.comments) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            await stream.wait_comment(remaining)
        except (TimeoutError, StreamClosed):
            if len(stream.comments) < n:
                return None
    return stream.comments[n - 1]


@requirement("sse/4.7/1")
async def test_keepalive_comments_arrive_every_interval(world: TenantWorld, facts: Facts) -> None:
    interval = facts.keepalive_interval
    first_band = Band(0.0, 1.25 * interval + 0.25, 2 * interval + 0.5)
    gap_band = Band(0.5 * interval, 1.25 * interval + 0.25, 2 * interval + 0.5)
    facts.require_wait(2 * interval, "two keep-alive intervals")
    async with await world.subscribe(await world.workflow()) as stream:
        opened = stream.opened_at
        first = await _comment(stream, 1, opened + first_band.late)
        if first is None:
            raise Mismatch(
                "first comment after the headers",
                f"within {first_band.high:.2f} s",
                f"none within {first_band.late:.2f} s",
            )
        second = await _comment(stream, 2, first.received_at + gap_band.late)
        if second is None:
            raise Mismatch(
                "second comment after the first",
                f"within {gap_band.high:.2f} s",
                f"none within {gap_band.late:.2f} s",
            )
    first_band.check("first comment after the headers", first.received_at - opened)
    gap_band.check("second comment after the first", second.received_at - first.received_at)


def _idle_band(timeout: float) -> Band:
    return Band(
        timeout - max(0.5, 0.1 * timeout), timeout + max(1.0, 0.15 * timeout), 1.5 * timeout + 2
    )


@requirement("sse/4.8/1")
async def test_idle_stream_ends_cleanly_after_idle_timeout(
    world: TenantWorld, facts: Facts
) -> None:
    band = _idle_band(facts.idle_timeout)
    facts.require_wait(facts.idle_timeout, "waiting for the idle timeout")
    async with await world.subscribe(await world.workflow()) as stream:
        try:
            await stream.wait_closed(band.late - (time.monotonic() - stream.opened_at))
        except TimeoutError:
            raise Mismatch(
                "stream end",
                f"closed by the server after {band.low:.1f}..{band.high:.1f} s",
                f"still open after {band.late:.1f} s",
            ) from None
        lasted = time.monotonic() - stream.opened_at
        expect("how the stream ended", repr(stream.error) if stream.error else "cleanly", "cleanly")
    band.check("stream lasted", lasted)


@requirement("sse/4.8/2")
async def test_every_event_resets_the_idle_timeout(world: TenantWorld, facts: Facts) -> None:
    timeout = facts.idle_timeout
    check_at = _idle_band(timeout).high
    facts.require_wait(check_at, "an idle timeout and its tolerance")
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await asyncio.sleep(max(0.0, stream.opened_at + timeout / 2 - time.monotonic()))
        await pub.token("activity", workflow_id=wf, task_id=new_id())
        await stream.next_event()
        try:
            await stream.wait_closed(max(0.0, stream.opened_at + check_at - time.monotonic()))
        except TimeoutError:
            return  # still open: the event restarted the countdown
        lasted = time.monotonic() - stream.opened_at
    raise Mismatch(
        f"stream state {check_at:.1f} s after the headers (an event at {timeout / 2:.1f} s)",
        "still open",
        f"closed after {lasted:.1f} s",
    )
