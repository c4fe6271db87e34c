"""The consolidated stream: the whole descendant tree, including late children (seed 6.6)."""

from __future__ import annotations

import uuid

import pytest

from harness.world import TenantWorld

pytestmark = pytest.mark.integration


async def test_events_of_child_and_grandchild_carry_their_source(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    grandchild = await world.workflow(parent=child)
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        for wf in (root, child, grandchild):
            await pub.token(f"from {wf}", workflow_id=wf, task_id=str(uuid.uuid4()))
        events = await stream.next_events(3)
    sources = [e.json()["workflowExecutionId"] for e in events]
    assert sources == [root, child, grandchild]
    assert [e.json()["data"] for e in events] == [f"from {wf}" for wf in (root, child, grandchild)]


async def test_children_created_after_connecting_join_the_stream(world: TenantWorld) -> None:
    root = await world.workflow()
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        late = await world.workflow(parent=root)
        later = await world.workflow(parent=late)
        await pub.data("late", workflow_id=late, task_id=str(uuid.uuid4()))
        await pub.data("later", workflow_id=later, task_id=str(uuid.uuid4()))
        events = await stream.next_events(2)
    assert [e.json()["workflowExecutionId"] for e in events] == [late, later]


async def test_unrelated_workflows_stay_out(world: TenantWorld) -> None:
    root, stranger = await world.workflow(), await world.workflow()
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        await pub.data("stranger", workflow_id=stranger, task_id=str(uuid.uuid4()))
        await stream.assert_no_event(within=0.4)


async def test_plain_stream_excludes_children(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    async with await world.subscribe(root) as stream, world.publisher() as pub:
        await pub.data("child", workflow_id=child, task_id=str(uuid.uuid4()))
        await pub.data("root", workflow_id=root, task_id=str(uuid.uuid4()))
        assert (await stream.next_event()).data == "root"


async def test_end_follows_the_roots_completion_only(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        await world.api.complete_workflow(world.slug, child)
        await pub.data("still open", workflow_id=child, task_id=str(uuid.uuid4()))
        assert (await stream.next_event()).json()["data"] == "still open"
        await world.api.complete_workflow(world.slug, root, "CANCELLED")
        end = await stream.next_event()
        await stream.wait_closed(2)
    assert (end.event, end.json()) == ("end", {"status": "CANCELLED"})


async def test_consolidated_resume_has_no_gap_and_no_duplicate(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    async with world.publisher() as pub:
        async with await world.subscribe(root, consolidated=True) as stream:
            await pub.data("r1", workflow_id=root, task_id=str(uuid.uuid4()))
            first = await stream.next_event()
        await pub.data("c1", workflow_id=child, task_id=str(uuid.uuid4()))
        await pub.data("r2", workflow_id=root, task_id=str(uuid.uuid4()))
        async with await world.subscribe(root, consolidated=True, last_event_id=first.id) as again:
            events = await again.next_events(2)
            await again.assert_no_event(within=0.3)
    assert [e.json()["data"] for e in events] == ["c1", "r2"]
