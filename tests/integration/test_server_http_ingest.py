"""POST /api/tenants/{tenant}/task-data: NDJSON in, the gRPC batch contract out, problems as
RFC 9457 documents."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from harness.http_ingest import ingest_line, ndjson
from harness.world import TenantWorld
from tests.conftest import ServerFactory

pytestmark = pytest.mark.integration


def _id() -> str:
    return str(uuid.uuid4())


async def test_lines_are_delivered_in_order(world: TenantWorld) -> None:
    wf, task = await world.workflow(), _id()
    async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
        answer = await ingest.post(
            [ingest_line("token", str(i), workflow_id=wf, task_id=task) for i in range(10)]
        )
        events = await stream.next_events(10)
    assert (answer.status, answer.body) == (200, {"accepted": 10, "rejected": []})
    assert [e.data for e in events] == [str(i) for i in range(10)]


async def test_every_proto3_json_spelling_is_accepted(world: TenantWorld) -> None:
    wf, task = await world.workflow(), _id()
    spellings: list[dict[str, object]] = [
        {"workflowExecutionId": wf, "taskExecutionId": task, "type": "PROGRESS", "payload": "a"},
        {"workflow_execution_id": wf, "task_execution_id": task, "type": 2, "payload": "b"},
        {"workflowExecutionId": wf, "taskExecutionId": task, "type": "PROGRESS",
         "payload": "c", "timestampMs": "1700000000000", "sequence": "7"},
    ]  # fmt: skip
    async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
        answer = await ingest.post(b"\n" + ndjson(spellings) + b"\n\n")  # blank lines skipped
        events = await stream.next_events(3)
    assert (answer.status, answer.body) == (200, {"accepted": 3, "rejected": []})
    assert [(e.event, e.data) for e in events] == [("progress", p) for p in "abc"]


async def test_bad_lines_are_rejected_by_index(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    wf, theirs = await world.workflow(), await other_world.workflow()
    async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
        answer = await ingest.post(
            [
                "[1, 2]",
                ingest_line("token", "a", workflow_id=wf, task_id=_id()),
                '{"payload": 5}',
                ingest_line("token", "intrusion", workflow_id=theirs, task_id=_id()),
                ingest_line("nope", "x", workflow_id=wf, task_id=_id()),
                ingest_line(0, "x", workflow_id=wf, task_id=_id()),
                '{"unknownField": 1}',
                ingest_line("token", "b", workflow_id=wf, task_id=_id()),
            ]
        )
        events = await stream.next_events(2)
    assert answer.status == 200
    assert answer.body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in answer.body["rejected"]] == [
        (0, "INVALID_ARGUMENT"),
        (2, "INVALID_ARGUMENT"),
        (3, "PERMISSION_DENIED"),
        (4, "INVALID_ARGUMENT"),
        (5, "INVALID_ARGUMENT"),
        (6, "INVALID_ARGUMENT"),
    ]
    assert [e.data for e in events] == ["a", "b"]


async def test_refusals_of_the_whole_request_are_problems(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    line = [ingest_line("token", "x", workflow_id=await world.workflow(), task_id=_id())]
    async with world.http_ingest() as ingest:
        cases = {
            "no token": await ingest.post(line, token=""),
            "bad scheme": await ingest.post(line, token="a b"),
            "user token": await ingest.post(line, token=world.user.token),
            "other tenant": await ingest.post(line, token=other_world.worker.token),
            "json": await ingest.post(line, content_type="application/json"),
        }
    got = {name: (a.status, a.content_type) for name, a in cases.items()}
    problem = "application/problem+json"
    assert got == {
        "no token": (401, problem),
        "bad scheme": (401, problem),
        "user token": (403, problem),
        "other tenant": (403, problem),
        "json": (415, problem),
    }


async def test_limits_answer_413_before_anything_is_delivered(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_batch_events=3, max_batch_bytes=2000)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    try:
        wf = await world.workflow()
        line = ingest_line("token", "x", workflow_id=wf, task_id=_id())
        async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
            too_many = await ingest.post([line] * 4)
            too_big = await ingest.post([ingest_line("token", "y" * 2000, workflow_id=wf)])
            # Chunked, so no Content-Length to refuse early: the reader stops at the limit.
            async with aiohttp.ClientSession() as session:

                async def body() -> AsyncIterator[bytes]:
                    for _ in range(10):
                        yield ndjson([line])

                async with session.post(
                    ingest.url,
                    data=body(),
                    headers={"Content-Type": "application/x-ndjson",
                             "Authorization": f"Bearer {world.worker.token}"},
                ) as response:  # fmt: skip
                    chunked_status = response.status
            await ingest.post([ingest_line("token", "marker", workflow_id=wf, task_id=_id())])
            first = await stream.next_event()
    finally:
        await world.close()
    assert too_many.status == too_big.status == chunked_status == 413
    assert "at most 3 events" in too_many.body["detail"]
    assert first.data == "marker"
