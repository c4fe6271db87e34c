"""The gRPC servicer without a socket: `grpcio-testing` invokes `TaskExecutionService` directly
(its request, metadata and status in memory), over the real store of a running server
(PostgreSQL-backed auth and directory). The validation paths answer with the right status and a
detail that says what is wrong, and a refused call publishes nothing.

grpcio-testing drives synchronous servicers from its own threads; the reference servicer is
`grpc.aio`, so `AsyncServicer` runs each call on the test's event loop and hands grpcio-testing's
context to it with an awaitable `abort`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from harness.world import TenantWorld
from reference_server.app import Server
from reference_server.grpc_service import TaskExecutionService
from taskstream_proto import task_streaming_pb2 as pb

grpc_testing = pytest.importorskip("grpc_testing", reason="grpcio-testing comes with [dev]")

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["TaskExecution"]
METHOD = SERVICE.methods_by_name["StreamTaskData"]
PUBLISHED = 'flovyn_stream_events_published_total{type="TOKEN"}'


class _AioContext:
    """grpcio-testing's servicer context, with the coroutine `abort` of `grpc.aio`."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.abort(code, details)  # records the status, then raises


class AsyncServicer:
    """Runs the async servicer's methods on `loop` for grpcio-testing's worker thread."""

    def __init__(self, servicer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._servicer, self._loop = servicer, loop

    def __getattr__(self, name: str) -> Callable[[Any, Any], Any]:
        method = getattr(self._servicer, name)

        def call(request: Any, context: Any) -> Any:
            coroutine = method(request, _AioContext(context))
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

        return call


async def invoke(
    server: Server, request: pb.StreamTaskDataRequest, token: str | None
) -> tuple[Any, grpc.StatusCode, str]:
    """(response, code, details) of one StreamTaskData call through grpcio-testing."""
    servicer = AsyncServicer(TaskExecutionService(server.ctx), asyncio.get_running_loop())
    testing = grpc_testing.server_from_dictionary(
        {SERVICE: servicer}, grpc_testing.strict_real_time()
    )
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    rpc = testing.invoke_unary_unary(METHOD, metadata, request, None)
    response, _trailing, code, details = await asyncio.to_thread(rpc.termination)
    return response, code, details


def event(**fields: Any) -> pb.StreamTaskDataRequest:
    values: dict[str, Any] = {"type": pb.TOKEN, "payload": "x", "sequence": 1, **fields}
    return pb.StreamTaskDataRequest(**values)


async def test_an_event_of_the_workers_tenant_is_acknowledged(
    server: Server, world: TenantWorld
) -> None:
    wf = await world.workflow()
    published = (await world.metrics()).get(PUBLISHED, 0.0)
    response, code, _ = await invoke(
        server, event(workflow_execution_id=wf, task_execution_id=str(uuid.uuid4())),
        world.worker.token,
    )  # fmt: skip
    assert code is grpc.StatusCode.OK and response.acknowledged
    assert (await world.metrics())[PUBLISHED] == published + 1


@pytest.mark.parametrize(
    ("fields", "credentials", "code", "says"),
    [
        ({}, None, grpc.StatusCode.UNAUTHENTICATED, ""),
        ({}, "user", grpc.StatusCode.PERMISSION_DENIED, "worker token"),
        ({"type": 9}, "worker", grpc.StatusCode.INVALID_ARGUMENT, "type"),
        ({"workflow_execution_id": "", "task_execution_id": ""}, "worker",
         grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ({"workflow_execution_id": "not-a-uuid"}, "worker",
         grpc.StatusCode.INVALID_ARGUMENT, "workflow_execution_id"),
        ({"task_execution_id": "nope"}, "worker", grpc.StatusCode.INVALID_ARGUMENT,
         "task_execution_id"),
        ({"workflow_execution_id": str(uuid.uuid4())}, "worker", grpc.StatusCode.NOT_FOUND,
         "not found"),
    ],
)  # fmt: skip
async def test_a_refused_call_has_the_right_status_and_says_why(
    server: Server,
    world: TenantWorld,
    fields: dict[str, Any],
    credentials: str | None,
    code: grpc.StatusCode,
    says: str,
) -> None:
    wf = await world.workflow()
    request = event(workflow_execution_id=wf, task_execution_id=str(uuid.uuid4()))
    for name, value in fields.items():
        setattr(request, name, value)
    token = {None: None, "user": world.user.token, "worker": world.worker.token}[credentials]
    published = (await world.metrics()).get(PUBLISHED, 0.0)
    response, status, details = await invoke(server, request, token)
    assert (response, status) == (None, code)
    assert says.lower() in details.lower()
    assert (await world.metrics()).get(PUBLISHED, 0.0) == published
