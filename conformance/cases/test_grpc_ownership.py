"""SPEC §3.4: ownership and tenant isolation on the write path."""

from __future__ import annotations

from conformance import requirement
from conformance.checks import expect
from conformance.wire import new_id, rpc_status
from harness.world import TenantWorld


@requirement("grpc/3.4/1")
async def test_unknown_workflow_is_not_found(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        status = await rpc_status(pub.token("x", workflow_id=new_id(), task_id=new_id()))
    expect("status for an unknown workflow", status, "NOT_FOUND")


@requirement("grpc/3.4/2")
async def test_another_tenants_workflow_is_permission_denied(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    theirs = await other_world.workflow()
    async with world.publisher() as intruder:
        status = await rpc_status(intruder.token("x", workflow_id=theirs, task_id=new_id()))
    expect("status for another tenant's workflow", status, "PERMISSION_DENIED")


@requirement("grpc/3.4/3")
async def test_cross_tenant_publish_reaches_nobody(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream:
        async with other_world.publisher() as intruder:
            await rpc_status(intruder.token("intrusion", workflow_id=wf, task_id=new_id()))
        async with world.publisher() as owner:
            await owner.token("marker", workflow_id=wf, task_id=new_id())
        first = await stream.next_event()
    expect("first event after a cross-tenant publish", first.data, "marker")
