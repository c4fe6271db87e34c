"""SPEC §3.3, §3.4 and §4.4: one spelling of an id, undecodable messages, and task labels that
must name the event's workflow's own task."""

from __future__ import annotations

from urllib.parse import quote

from conformance import requirement
from conformance.checks import expect, expect_all
from conformance.wire import new_id, rpc_status, sse_answer
from harness.wire.grpc_calls import aio_channel
from harness.world import TenantWorld

METHOD = "/flovyn.v1.TaskExecution/StreamTaskData"


def _spellings(canonical: str) -> dict[str, str]:
    return {
        "upper case": canonical.upper(),
        "no hyphens": canonical.replace("-", ""),
        "urn:uuid:": f"urn:uuid:{canonical}",
        "braces": f"{{{canonical}}}",
    }


@requirement("grpc/3.3/7")
async def test_non_canonical_uuid_spelling_is_invalid_argument(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        statuses: dict[str, object] = {
            name: await rpc_status(pub.token("phantom", workflow_id=spelled, task_id=new_id()))
            for name, spelled in _spellings(wf).items()
        }
        await pub.token("marker", workflow_id=wf, task_id=new_id())
        first = await stream.next_event()
    expect_all("status of a non-canonical workflow id", statuses, "INVALID_ARGUMENT")
    expect("first event after the non-canonical publishes", first.data, "marker")


@requirement("grpc/3.3/8")
async def test_undecodable_message_is_invalid_argument(world: TenantWorld) -> None:
    bodies = {"ff ff ff ff": b"\xff\xff\xff\xff", "field cut short": b"\x0a\x05ab"}
    metadata = (("authorization", f"Bearer {world.worker.token}"),)
    async with aio_channel(world.grpc_address) as channel:
        # No serializers: the bytes go out as they are.
        send = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        statuses: dict[str, object] = {
            name: await rpc_status(send(body, metadata=metadata, timeout=10))
            for name, body in bodies.items()
        }
    expect_all("status of an undecodable message", statuses, "INVALID_ARGUMENT")


@requirement("grpc/3.4/4")
async def test_task_of_another_workflow_is_permission_denied(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    a, b, theirs = await world.workflow(), await world.workflow(), await other_world.workflow()
    task = await world.task(a)
    async with await world.subscribe(b) as stream, world.publisher() as pub:
        statuses: dict[str, object] = {
            "same tenant, workflow B": await rpc_status(
                pub.token("forged", workflow_id=b, task_id=task)
            ),
        }
        async with other_world.publisher() as intruder:
            statuses["other tenant, its own workflow"] = await rpc_status(
                intruder.token("forged", workflow_id=theirs, task_id=task)
            )
        await pub.token("marker", workflow_id=b, task_id=new_id())
        first = await stream.next_event()
    expect_all("status of an event labelled with a task of workflow A", statuses,
               "PERMISSION_DENIED")  # fmt: skip
    expect("first event on B's stream", first.data, "marker")


@requirement("sse/4.4/8")
async def test_non_canonical_uuid_spelling_is_400(world: TenantWorld) -> None:
    wf = await world.workflow()
    statuses: dict[str, object] = {}
    for name, spelled in _spellings(wf).items():
        url = world.workflow_url(quote(spelled, safe=""))
        statuses[name] = (await sse_answer(url, token=world.user.token)).status
    expect_all("status of a non-canonical workflow id", statuses, 400)
