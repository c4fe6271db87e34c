"""StreamTaskData over a real gRPC channel (seed 4.7, 4.8; SPEC.md §3)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.publisher import Publisher, build_request
from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration


async def _code(pub: Publisher, **kw: object) -> grpc.StatusCode:
    try:
        await pub.send(**kw)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_success_is_acknowledged(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        assert await pub.token("x", workflow_id=wf, task_id=str(uuid.uuid4()))


async def test_publish_without_subscribers_is_acknowledged(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        assert all(
            [await pub.data(str(i), workflow_id=wf, task_id=str(uuid.uuid4())) for i in range(5)]
        )


@pytest.mark.parametrize("event_type", [0, 5, 99, -1])
async def test_invalid_event_type_is_invalid_argument(world: TenantWorld, event_type: int) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        code = await _code(
            pub, event_type=event_type, payload="x", workflow_id=wf, task_id=str(uuid.uuid4())
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("workflow", "task"),
    [("not-a-uuid", "VALID"), ("VALID", "nope"), ("", "")],
)
async def test_bad_ids_are_invalid_argument(world: TenantWorld, workflow: str, task: str) -> None:
    wf = await world.workflow()
    workflow = wf if workflow == "VALID" else workflow
    task = str(uuid.uuid4()) if task == "VALID" else task
    async with world.publisher() as pub:
        code = await _code(pub, event_type="token", payload="x", workflow_id=workflow, task_id=task)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_payload_limit_counts_utf8_bytes(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = str(uuid.uuid4())
    async with world.publisher() as pub:
        assert await pub.data("a" * 65536, workflow_id=wf, task_id=task)
        too_big = "é" * 32768 + "a"  # 65,537 bytes, 32,769 characters
        code = await _code(pub, event_type="data", payload=too_big, workflow_id=wf, task_id=task)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_workflow_is_not_found(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        code = await _code(pub, event_type="token", payload="x", workflow_id=str(uuid.uuid4()),
                           task_id=str(uuid.uuid4()))  # fmt: skip
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("token", [None, "", "fwt_unknown"])
async def test_missing_or_unknown_token_is_unauthenticated(
    world: TenantWorld, token: str | None
) -> None:
    wf = await world.workflow()
    async with Publisher(world.grpc_address, token) as pub:
        code = await _code(
            pub, event_type="token", payload="x", workflow_id=wf, task_id=str(uuid.uuid4())
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_malformed_authorization_metadata_is_unauthenticated(world: TenantWorld) -> None:
    wf = await world.workflow()
    request = build_request(workflow_id=wf, task_id=str(uuid.uuid4()), event_type="token",
                            payload="x", sequence=1)  # fmt: skip
    async with world.publisher() as pub:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pub.send_request(
                request, metadata=[("authorization", f"Token {world.worker.token}")]
            )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_user_token_cannot_publish(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher(token=world.user.token) as pub:
        code = await _code(
            pub, event_type="token", payload="x", workflow_id=wf, task_id=str(uuid.uuid4())
        )
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_revoked_worker_token_is_refused_on_its_next_call(world: TenantWorld) -> None:
    wf = await world.workflow()
    worker = await world.api.create_token(world.slug, "worker")
    async with world.publisher(token=worker.token) as pub:
        assert await pub.token("ok", workflow_id=wf, task_id=str(uuid.uuid4()))
        await world.api.revoke_token(worker.id)
        code = await _code(
            pub, event_type="token", payload="x", workflow_id=wf, task_id=str(uuid.uuid4())
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_worker_token_is_unauthenticated(world: TenantWorld) -> None:
    import asyncio

    wf = await world.workflow()
    worker = await world.api.create_token(world.slug, "worker", ttl_seconds=1)
    await asyncio.sleep(1.2)
    async with world.publisher(token=worker.token) as pub:
        code = await _code(
            pub, event_type="token", payload="x", workflow_id=wf, task_id=str(uuid.uuid4())
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_standalone_task_publishes_to_its_task_stream(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    task = await world.task()
    async with await world.subscribe_task(task) as stream, world.publisher() as pub:
        assert await pub.progress("10%", task_id=task)
        event = await stream.next_event()
    assert (event.event, event.data) == ("progress", "10%")
    async with world.publisher() as pub:
        assert await _code(pub, event_type="token", payload="x", task_id=str(uuid.uuid4())) == (
            grpc.StatusCode.NOT_FOUND
        )
    async with other_world.publisher() as intruder:
        assert await _code(intruder, event_type="token", payload="x", task_id=task) == (
            grpc.StatusCode.PERMISSION_DENIED
        )


async def test_task_stream_of_a_workflow_task_is_filtered(world: TenantWorld) -> None:
    wf = await world.workflow()
    mine, sibling = await world.task(wf), await world.task(wf)
    async with await world.subscribe_task(mine) as stream, world.publisher() as pub:
        await pub.token("sibling", workflow_id=wf, task_id=sibling)
        await pub.token("mine", workflow_id=wf, task_id=mine)
        assert (await stream.next_event()).data == "mine"
        await world.api.complete_task(world.slug, mine)
        assert (await stream.next_event()).event == "end"


async def test_health_and_reflection_services_answer(server: Server) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="flovyn.v1.TaskExecution"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            break
    assert "flovyn.v1.TaskExecution" in names
