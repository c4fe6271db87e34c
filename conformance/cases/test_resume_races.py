"""SPEC §4.10: the replay/live seam under concurrent publishes, and cursors that really expired."""

from __future__ import annotations

import asyncio

from conformance import requirement
from conformance.checks import expect, informational
from conformance.fixtures import Facts
from conformance.wire import events_until, events_upto, events_within, new_id
from harness.world import TenantWorld

REPLAYED = LIVE = 40
MAX_RETENTION_EVENTS = 500


@requirement("sse/4.10/7")
async def test_events_published_during_replay_follow_it(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = new_id()
    async with world.publisher() as pub:
        async with await world.subscribe(wf) as first:
            await pub.token("e0", workflow_id=wf, task_id=task)
            cursor = (await first.next_event()).id
        for n in range(1, REPLAYED + 1):
            await pub.token(f"r{n}", workflow_id=wf, task_id=task)
        async with await world.subscribe(wf, last_event_id=cursor) as again:

            async def publish_live() -> None:
                for n in range(1, LIVE + 1):
                    await pub.token(f"l{n}", workflow_id=wf, task_id=task)

            publishing = asyncio.create_task(publish_live())
            events = await events_until(again, f"l{LIVE}", timeout=10)
            await publishing
            events += await events_within(again, 0.5)
    wanted = [f"r{n}" for n in range(1, REPLAYED + 1)] + [f"l{n}" for n in range(1, LIVE + 1)]
    expect("events after resuming from e0 while publishing", [e.data for e in events], wanted)


@requirement("sse/4.10/8")
async def test_an_expired_cursor_yields_gap(world: TenantWorld, facts: Facts) -> None:
    seconds, count = facts.retention_seconds, facts.retention_events
    by_count = count is not None and count <= MAX_RETENTION_EVENTS
    if not by_count:
        if seconds is None:
            informational("the target declares no retention_seconds or retention_events")
        facts.require_wait(seconds + 1, "letting an event fall out of retention")
    wf = await world.workflow()
    task = new_id()
    async with world.publisher() as pub:
        async with await world.subscribe(wf) as first:
            await pub.token("e0", workflow_id=wf, task_id=task)
            cursor = (await first.next_event()).id
        await pub.token("e1", workflow_id=wf, task_id=task)
        if by_count:
            assert count is not None
            for n in range(count):
                await pub.token(f"f{n}", workflow_id=wf, task_id=task)
        else:
            assert seconds is not None
            await asyncio.sleep(seconds + 1)  # time passing is the point: e1 expires
        await pub.token("e2", workflow_id=wf, task_id=task)
        async with await world.subscribe(wf, last_event_id=cursor) as again:
            events = await events_upto(again, 1)
            if events and events[0].event == "gap":
                events += await events_until(again, "e2", timeout=10)
    seen = [e.event if e.event == "gap" else e.data for e in events]
    expect("first event after resuming from an expired cursor", seen[:1], ["gap"])
    expect("e1 (expired) replayed", "e1" in seen, False)
