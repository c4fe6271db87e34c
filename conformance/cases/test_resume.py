"""SPEC §4.10 and §5.3: cursors, replay, gap, and resuming on another instance."""

from __future__ import annotations

from conformance import requirement
from conformance.checks import expect, expect_all
from conformance.fixtures import Facts
from conformance.wire import events_until, events_upto, events_within, new_id, payload_of
from harness.world import TenantWorld


async def _resume(world: TenantWorld, *, via_query: bool) -> list[str]:
    """Receive e0..e2, disconnect, miss e3 and e4, resume from e1, then e5 goes live."""
    wf = await world.workflow()
    task = await world.task(wf)
    async with world.publisher() as pub:
        async with await world.subscribe(wf) as first:
            for n in range(3):
                await pub.token(f"e{n}", workflow_id=wf, task_id=task)
            seen = await first.next_events(3)
        for n in (3, 4):
            await pub.token(f"e{n}", workflow_id=wf, task_id=task)
        cursor = seen[1].id or ""
        if via_query:
            again = await world.subscribe(wf, query={"lastEventId": cursor})
        else:
            again = await world.subscribe(wf, last_event_id=cursor)
        async with again:
            await pub.token("e5", workflow_id=wf, task_id=task)
            events = await events_until(again, "e5")
            events += await events_within(again, 0.5)
    return [e.data for e in events]


@requirement("sse/4.10/1")
async def test_without_a_cursor_a_stream_is_live_only(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        await pub.token("before", workflow_id=wf, task_id=new_id())
        async with await world.subscribe(wf) as stream:
            await pub.token("after", workflow_id=wf, task_id=new_id())
            first = await stream.next_event()
    expect("first event of a stream opened without a cursor", first.data, "after")


@requirement("sse/4.10/2")
async def test_last_event_id_resumes_without_gap_or_duplicate(world: TenantWorld) -> None:
    expect(
        "events after resuming from e1 (Last-Event-ID)",
        await _resume(world, via_query=False),
        ["e2", "e3", "e4", "e5"],
    )


@requirement("sse/4.10/3")
async def test_last_event_id_query_parameter_resumes(world: TenantWorld) -> None:
    expect(
        "events after resuming from e1 (?lastEventId)",
        await _resume(world, via_query=True),
        ["e2", "e3", "e4", "e5"],
    )


@requirement("sse/4.10/4")
async def test_from_start_replays_what_is_retained(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        for n in range(3):
            await pub.token(f"e{n}", workflow_id=wf, task_id=new_id())
    async with await world.subscribe(wf, query={"from": "start"}) as stream:
        events = await events_upto(stream, 3)
    expect("events replayed from the start", [e.data for e in events], ["e0", "e1", "e2"])


@requirement("sse/4.10/5")
async def test_unplaceable_cursor_yields_gap_then_retained(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        await pub.token("kept", workflow_id=wf, task_id=new_id())
    seen: dict[str, object] = {}
    for cursor in ("not-a-cursor", "999999999999999"):
        async with await world.subscribe(wf, last_event_id=cursor) as stream:
            events = await events_upto(stream, 2)
            seen[f"Last-Event-ID: {cursor}"] = [
                (e.event, e.data if e.event != "gap" else "…") for e in events
            ]
    expect_all("first two events", seen, [("gap", "…"), ("token", "kept")])


@requirement("sse/4.10/6")
async def test_consolidated_stream_resumes(world: TenantWorld, facts: Facts) -> None:
    facts.require_profile("consolidated")
    root = await world.workflow()
    child = await world.workflow(parent=root)
    async with world.publisher() as pub:
        async with await world.subscribe(root, consolidated=True) as first:
            await pub.data("r1", workflow_id=root, task_id=new_id())
            cursor = (await first.next_event()).id
        await pub.data("c1", workflow_id=child, task_id=new_id())
        await pub.data("r2", workflow_id=root, task_id=new_id())
        async with await world.subscribe(root, consolidated=True, last_event_id=cursor) as again:
            events = await events_until(again, "r2")
            events += await events_within(again, 0.5)
    expect("events after resuming from r1", [payload_of(e) for e in events], ["c1", "r2"])


@requirement("bus/5.3/1")
async def test_cursor_from_one_instance_resumes_on_another(
    world: TenantWorld, facts: Facts
) -> None:
    facts.require_profile("multi-instance")
    one, two = facts.second_instance()
    wf = await world.workflow()
    task = await world.task(wf)
    async with world.publisher(one.grpc_address) as pub1, world.publisher(two.grpc_address) as pub2:
        async with await world.subscribe(wf, base=one.http_url) as first:
            await pub1.token("e0", workflow_id=wf, task_id=task)
            await pub1.token("e1", workflow_id=wf, task_id=task)
            cursor = (await first.next_events(2))[0].id
        await pub2.token("e2", workflow_id=wf, task_id=task)
        async with await world.subscribe(wf, base=two.http_url, last_event_id=cursor) as again:
            await pub1.token("e3", workflow_id=wf, task_id=task)
            events = await events_until(again, "e3")
            events += await events_within(again, 0.5)
    expect(
        "events resumed on the other instance from e0", [e.data for e in events], ["e1", "e2", "e3"]
    )
