"""SPEC §4.11: `end` when a workflow or task reaches a terminal state, then close."""

from __future__ import annotations

import json
import time

from conformance import requirement
from conformance.checks import Band, Mismatch, expect
from conformance.fixtures import Facts
from conformance.wire import new_id, payload_of
from harness.sse_client import SSEStream, StreamClosed
from harness.wire.sse import SSEEvent
from harness.world import TenantWorld

CLOSE_AFTER_END = Band(0.0, 2.0, 5.0)


def _end(event: SSEEvent) -> tuple[str, object]:
    try:
        status = json.loads(event.data).get("status")
    except (ValueError, AttributeError):
        status = f"(data {event.data!r})"
    return event.event, status


async def _end_then_close(stream: SSEStream, status: str) -> None:
    """The next event is `end` with `status`, and the server closes the stream after it."""
    try:
        event = await stream.next_event(timeout=5)
    except (TimeoutError, StreamClosed) as error:
        raise Mismatch("next event", f"end with status {status}", type(error).__name__) from None
    expect("next event and its status", _end(event), ("end", status))
    try:
        await stream.wait_closed(CLOSE_AFTER_END.late)
    except TimeoutError:
        raise Mismatch(
            "stream after end",
            "closed by the server",
            f"still open after {CLOSE_AFTER_END.late:.0f} s",
        ) from None
    CLOSE_AFTER_END.check("close after end", time.monotonic() - event.received_at)


@requirement("sse/4.11/1")
async def test_completion_sends_end_then_closes(world: TenantWorld, facts: Facts) -> None:
    facts.require_notifying_provisioner()
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream:
        await world.api.complete_workflow(world.slug, wf, "FAILED")
        await _end_then_close(stream, "FAILED")


@requirement("sse/4.11/2")
async def test_connecting_to_a_finished_workflow_yields_end(world: TenantWorld) -> None:
    wf = await world.workflow()
    await world.api.complete_workflow(world.slug, wf, "COMPLETED")
    async with await world.subscribe(wf) as stream:
        expect("status of a finished workflow's stream", stream.status, 200)
        await _end_then_close(stream, "COMPLETED")


@requirement("sse/4.11/3")
async def test_only_the_roots_completion_ends_a_consolidated_stream(
    world: TenantWorld, facts: Facts
) -> None:
    facts.require_profile("consolidated")
    facts.require_notifying_provisioner()
    root = await world.workflow()
    child = await world.workflow(parent=root)
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        await world.api.complete_workflow(world.slug, child, "COMPLETED")
        await pub.data("after the child's end", workflow_id=child, task_id=new_id())
        event = await stream.next_event()
        expect(
            "first event after the child completed",
            (event.event, payload_of(event)),
            ("data", "after the child's end"),
        )
        await world.api.complete_workflow(world.slug, root, "CANCELLED")
        await _end_then_close(stream, "CANCELLED")


@requirement("sse/4.11/4")
async def test_completing_a_standalone_task_ends_its_stream(
    world: TenantWorld, facts: Facts
) -> None:
    facts.require_profile("standalone-tasks")
    facts.require_notifying_provisioner()
    task = await world.task()
    async with await world.subscribe_task(task) as stream:
        await world.api.complete_task(world.slug, task, "COMPLETED")
        await _end_then_close(stream, "COMPLETED")
