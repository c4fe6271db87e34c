"""SPEC §5.1 to 5.2: delivery and control across the instances that share a bus."""

from __future__ import annotations

import asyncio

from conformance import requirement
from conformance.checks import Band, expect_all
from conformance.fixtures import Facts
from conformance.wire import auth_expired_then_closed, events_until, new_id, source_of
from harness.world import TenantWorld


@requirement("bus/5.1/1")
async def test_event_published_on_one_instance_reaches_every_instance(
    world: TenantWorld, facts: Facts
) -> None:
    one, two = facts.second_instance()
    wf = await world.workflow()
    async with (
        await world.subscribe(wf, base=one.http_url) as on_one,
        await world.subscribe(wf, base=two.http_url) as on_two,
        world.publisher(one.grpc_address) as pub1,
        world.publisher(two.grpc_address) as pub2,
    ):
        await pub1.token("via instance 1", workflow_id=wf, task_id=new_id())
        await pub2.token("via instance 2", workflow_id=wf, task_id=new_id())
        received: dict[str, object] = {
            name: [e.data for e in await events_until(stream, "via instance 2")]
            for name, stream in (("instance 1", on_one), ("instance 2", on_two))
        }
    expect_all("events received on each instance", received, ["via instance 1", "via instance 2"])


@requirement("bus/5.2/1")
async def test_revocation_ends_streams_on_every_instance(world: TenantWorld, facts: Facts) -> None:
    _, two = facts.second_instance()
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user")
    async with await world.subscribe(wf, token=user.token, base=two.http_url) as stream:
        await world.api.revoke_token(user.id)
        revoked = asyncio.get_running_loop().time()
        await auth_expired_then_closed(stream, revoked, Band(0.0, 5.0, 10.0))


@requirement("bus/5.2/2")
async def test_new_descendant_joins_consolidated_streams_everywhere(
    world: TenantWorld, facts: Facts
) -> None:
    facts.require_profile("consolidated")
    facts.require_notifying_provisioner()
    one, two = facts.second_instance()
    root = await world.workflow()
    async with (
        await world.subscribe(root, consolidated=True, base=two.http_url) as stream,
        world.publisher(one.grpc_address) as pub,
    ):
        child = await world.workflow(parent=root)
        await pub.data("late child", workflow_id=child, task_id=new_id())
        event = await stream.next_event()
    expect_all("source of the event on the other instance", {"event": source_of(event)}, child)
