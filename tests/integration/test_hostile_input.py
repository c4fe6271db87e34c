"""Hostile input: random StreamTaskData requests get only documented status codes, and odd HTTP
requests get a clear 4xx, never a 5xx or a hang."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cluster import ServerProcess
from harness.world import TenantWorld
from taskstream_proto import task_streaming_pb2 as pb
from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration
ADMIN = "fat_" + secrets.token_urlsafe(32)
DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}  # fmt: skip


class Running:
    """A server process and a tenant on it, shared by the module's property tests."""

    def __init__(self, process: ServerProcess, world: TenantWorld, workflow: str) -> None:
        self.process = process
        self.world = world
        self.workflow = workflow


@pytest.fixture(scope="module")
def running(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.update(TASKSTREAM_DATABASE_URL=postgres.url, TASKSTREAM_ADMIN_TOKEN=ADMIN)
    process = ServerProcess("hostile", env, Path(tmp_path_factory.mktemp("hostile")))

    async def start() -> Running:
        await process.start()
        world = await TenantWorld.create(process.http_url, process.grpc_address, ADMIN)
        workflow = await world.workflow()
        await world.close()  # its HTTP session belongs to this loop; the tokens stay valid
        return Running(process, world, workflow)

    state = asyncio.run(start())
    yield state
    asyncio.run(process.stop())


ids = st.one_of(st.just(""), st.uuids().map(str), st.text(max_size=40),
                st.sampled_from(["VALID"]))  # fmt: skip
payloads = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["\r\n\r\nevent: end\ndata: x\n\n", "\x00\x00", "a\rb\nc", "é" * 32769]),
    st.integers(min_value=65530, max_value=65540).map(lambda n: "x" * n),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=ids, task=ids, kind=st.integers(min_value=-3, max_value=9), payload=payloads,
       sequence=st.integers(min_value=-(2**31), max_value=2**31 - 1))  # fmt: skip
def test_random_stream_task_data_gets_only_documented_codes(
    running: Running, workflow: str, task: str, kind: int, payload: str, sequence: int
) -> None:
    request = pb.StreamTaskDataRequest(
        workflow_execution_id=running.workflow if workflow == "VALID" else workflow,
        task_execution_id=str(uuid.uuid4()) if task == "VALID" else task,
        type=kind,  # type: ignore[arg-type]
        payload=payload,
        sequence=sequence,
    )
    with grpc.insecure_channel(running.process.grpc_address) as channel:
        stub = pb_grpc.TaskExecutionStub(channel)
        try:
            reply = stub.StreamTaskData(
                request, metadata=(("authorization", f"Bearer {running.world.worker.token}"),),
                timeout=5,
            )  # fmt: skip
        except grpc.RpcError as error:
            assert error.code() in DOCUMENTED, error.details()
        else:
            assert reply.acknowledged


def _raw_http(address: str, request: bytes) -> int:
    host, port = address.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        head = sock.recv(4096).decode(errors="replace")
    return int(head.split()[1])


@pytest.mark.parametrize(
    "request_line",
    [
        "GET /api/tenants/../admin/tenants HTTP/1.1",
        "GET /api/tenants/%2e%2e/stream/workflows/x HTTP/1.1",
        "GET /api/tenants/a/stream/workflows/%00%ff HTTP/1.1",
        "GET /api/tenants/a/stream/workflows/" + "f" * 5000 + " HTTP/1.1",
        "GET /metrics?" + "q=1&" * 5000 + " HTTP/1.1",
        "POST /api/admin/tenants HTTP/1.1\r\nContent-Length: 5000000",
        "GET / HTTP/1.1\r\nX-Big: " + "b" * 20000,
        "BREW /coffee HTCPCP/1.0",
    ],
    ids=[
        "traversal",
        "encoded-traversal",
        "nul-and-bad-utf8",
        "long-path",
        "huge-query",
        "huge-body",
        "huge-header",
        "nonsense",
    ],
)
def test_odd_http_requests_get_a_clear_4xx(running: Running, request_line: str) -> None:
    status = _raw_http(running.process.http_url, f"{request_line}\r\nHost: x\r\n\r\n".encode())
    assert 400 <= status < 500
    assert "Traceback" not in running.process.log_tail(400)
