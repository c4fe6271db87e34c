"""SPEC §3.1: the StreamTaskData service, health checking and reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conformance import requirement
from conformance.checks import expect, expect_all, expect_that
from conformance.wire import rpc_status
from harness.wire.grpc_calls import aio_channel
from harness.world import TenantWorld

SERVICE = "flovyn.v1.TaskExecution"


@requirement("grpc/3.1/1")
async def test_accepted_event_is_acknowledged(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    async with world.publisher() as pub:
        acknowledged = await pub.token("hello", workflow_id=wf, task_id=task)
    expect("acknowledged", acknowledged, True)


@requirement("grpc/3.1/2")
async def test_publish_without_subscribers_is_acknowledged(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    answers: dict[str, object] = {}
    async with world.publisher() as pub:
        for n, kind in enumerate(("token", "progress", "data", "error", "token")):
            answers[f"{kind} #{n}"] = await pub.send(kind, f"p{n}", workflow_id=wf, task_id=task)
    expect_all("acknowledged with nobody watching", answers, True)


@requirement("grpc/3.1/3")
async def test_health_check_answers_serving(world: TenantWorld) -> None:
    async with aio_channel(world.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        except grpc.aio.AioRpcError as error:
            expect("grpc.health.v1.Health/Check status", error.code().name, "OK")
            return
    expect(
        "health status", health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), "SERVING"
    )


@requirement("grpc/3.1/4")
async def test_reflection_lists_the_service(world: TenantWorld) -> None:
    names: set[str] = set()
    async with aio_channel(world.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        status = await rpc_status(_list_services(stub, request, names))
    expect("ServerReflectionInfo status", status, "OK")
    expect_that("listed services", SERVICE in names, f"a list containing {SERVICE}", sorted(names))


async def _list_services(
    stub: reflection_pb2_grpc.ServerReflectionStub,
    request: reflection_pb2.ServerReflectionRequest,
    names: set[str],
) -> None:
    async for answer in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names.update(s.name for s in answer.list_services_response.service)
        return
