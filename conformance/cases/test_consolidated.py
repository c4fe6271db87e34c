"""SPEC §4.9: consolidated streams (the recursive tree) and the plain stream's boundaries."""

from __future__ import annotations

import json

from conformance import requirement
from conformance.checks import expect, expect_that
from conformance.fixtures import Facts
from conformance.wire import events_upto, new_id, payload_of, source_of
from harness.world import TenantWorld


@requirement("sse/4.9/1")
async def test_consolidated_stream_carries_the_whole_tree(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    grandchild = await world.workflow(parent=child)
    tree = {"root": root, "child": child, "grandchild": grandchild}
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        for name, wf in tree.items():
            await pub.token(f"from {name}", workflow_id=wf, task_id=new_id())
        received = [payload_of(e) for e in await events_upto(stream, 3)]
    expect("payloads received", sorted(received), sorted(f"from {name}" for name in tree))


@requirement("sse/4.9/2")
async def test_consolidated_data_is_json_naming_the_source(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    payload = 'line one\nline "two" — ünïcode'
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        await pub.data(payload, workflow_id=child, task_id=new_id())
        event = await stream.next_event()
    try:
        value = json.loads(event.data)
    except ValueError:
        value = None
    expect_that("data", isinstance(value, dict), "a JSON object", event.data)
    assert isinstance(value, dict)
    expect(
        "workflowExecutionId and data members",
        (value.get("workflowExecutionId"), value.get("data")),
        (child, payload),
    )


@requirement("sse/4.9/3")
async def test_descendants_created_after_connecting_join(world: TenantWorld, facts: Facts) -> None:
    facts.require_notifying_provisioner()
    root = await world.workflow()
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        late = await world.workflow(parent=root)
        later = await world.workflow(parent=late)
        await pub.data("late child", workflow_id=late, task_id=new_id())
        await pub.data("late grandchild", workflow_id=later, task_id=new_id())
        events = await events_upto(stream, 2)
    expect("sources of the events", [source_of(e) for e in events], [late, later])


@requirement("sse/4.9/4")
async def test_workflows_outside_the_tree_stay_out(world: TenantWorld) -> None:
    parent = await world.workflow()
    root = await world.workflow(parent=parent)
    sibling = await world.workflow(parent=parent)
    async with await world.subscribe(root, consolidated=True) as stream, world.publisher() as pub:
        await pub.data("parent", workflow_id=parent, task_id=new_id())
        await pub.data("sibling", workflow_id=sibling, task_id=new_id())
        await pub.data("marker", workflow_id=root, task_id=new_id())
        first = await stream.next_event()
    expect("first event's payload", payload_of(first), "marker")


@requirement("sse/4.9/5")
async def test_plain_stream_excludes_children(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    async with await world.subscribe(root) as stream, world.publisher() as pub:
        await pub.data("child", workflow_id=child, task_id=new_id())
        await pub.data("marker", workflow_id=root, task_id=new_id())
        first = await stream.next_event()
    expect("first event", first.data, "marker")
