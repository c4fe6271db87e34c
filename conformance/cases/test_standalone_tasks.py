"""SPEC §3.5 and §4.12: tasks without a workflow, and task streams."""

from __future__ import annotations

from conformance import requirement
from conformance.checks import expect
from conformance.wire import new_id, rpc_status, sse_answer
from harness.world import TenantWorld


@requirement("grpc/3.5/1")
async def test_standalone_task_event_reaches_its_task_stream(world: TenantWorld) -> None:
    task = await world.task()
    async with await world.subscribe_task(task) as stream, world.publisher() as pub:
        expect("task stream status", stream.status, 200)
        status = await rpc_status(pub.progress("10%", task_id=task))
        expect("publish status with an empty workflow id", status, "OK")
        event = await stream.next_event()
    expect("event received on the task stream", (event.event, event.data), ("progress", "10%"))


@requirement("grpc/3.5/2")
async def test_unknown_standalone_task_is_not_found(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        status = await rpc_status(pub.token("x", task_id=new_id()))
    expect("status for an unknown standalone task", status, "NOT_FOUND")


@requirement("grpc/3.5/3")
async def test_another_tenants_standalone_task_is_permission_denied(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    theirs = await other_world.task()
    async with world.publisher() as intruder:
        status = await rpc_status(intruder.token("x", task_id=theirs))
    expect("status for another tenant's standalone task", status, "PERMISSION_DENIED")


@requirement("sse/4.12/1")
async def test_unknown_task_stream_is_404(world: TenantWorld) -> None:
    answer = await sse_answer(world.task_url(new_id()), token=world.user.token)
    expect("status of an unknown task's stream", answer.status, 404)


@requirement("sse/4.12/2")
async def test_another_tenants_task_stream_is_403(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    theirs = await other_world.task()
    answer = await sse_answer(world.task_url(theirs), token=world.user.token)
    expect("status of another tenant's task stream", answer.status, 403)


@requirement("sse/4.12/3")
async def test_a_workflows_task_has_its_own_filtered_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    mine, sibling = await world.task(wf), await world.task(wf)
    async with await world.subscribe_task(mine) as stream, world.publisher() as pub:
        expect("status of a workflow task's stream", stream.status, 200)
        await pub.token("sibling", workflow_id=wf, task_id=sibling)
        await pub.token("mine", workflow_id=wf, task_id=mine)
        first = await stream.next_event()
    expect("first event on the task's stream", first.data, "mine")
