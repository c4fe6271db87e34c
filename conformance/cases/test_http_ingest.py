"""SPEC §3.7: HTTP ingest, `POST /api/tenants/{tenant}/task-data` with NDJSON."""

from __future__ import annotations

from conformance import requirement
from conformance.checks import expect
from conformance.fixtures import Facts
from conformance.wire import events_upto, new_id
from harness.http_ingest import ingest_line
from harness.world import TenantWorld

PROBLEM = "application/problem+json"


@requirement("http/3.7/1")
async def test_an_ndjson_batch_is_delivered_in_order(world: TenantWorld) -> None:
    wf, task = await world.workflow(), new_id()
    lines = [ingest_line("token", str(i), workflow_id=wf, task_id=task) for i in range(5)]
    lines[3]["type"] = 1  # the enum as a number, as proto3 JSON allows
    async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
        answer = await ingest.post(lines)
        events = await events_upto(stream, 5)
    expect("status", answer.status, 200)
    expect("answer", answer.body, {"accepted": 5, "rejected": []})
    expect("payloads delivered", [e.data for e in events], [str(i) for i in range(5)])


@requirement("http/3.7/2")
async def test_bad_lines_are_rejected_by_index(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    wf, theirs = await world.workflow(), await other_world.workflow()
    async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
        answer = await ingest.post(
            [
                ingest_line("token", "a", workflow_id=wf, task_id=new_id()),
                "{not json",
                ingest_line("token", "unknown", workflow_id=new_id(), task_id=new_id()),
                ingest_line("token", "intrusion", workflow_id=theirs, task_id=new_id()),
                ingest_line("token", "b", workflow_id=wf, task_id=new_id()),
            ]
        )
        events = await events_upto(stream, 2)
    body = answer.body if isinstance(answer.body, dict) else {}
    expect("status", answer.status, 200)
    expect("accepted", body.get("accepted"), 2)
    expect(
        "rejections (index, code)",
        [(r.get("index"), r.get("code")) for r in body.get("rejected", [])],
        [(1, "INVALID_ARGUMENT"), (2, "NOT_FOUND"), (3, "PERMISSION_DENIED")],
    )
    expect("payloads delivered", [e.data for e in events], ["a", "b"])


@requirement("http/3.7/3")
async def test_http_ingest_needs_the_tenants_worker_token(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    wf = await world.workflow()
    line = [ingest_line("token", "x", workflow_id=wf, task_id=new_id())]
    answers = {}
    async with world.http_ingest() as ingest:
        for name, token in (
            ("no token", ""),
            ("user token", world.user.token),
            ("another tenant's worker token", other_world.worker.token),
        ):
            answer = await ingest.post(line, token=token)
            challenge = answer.headers.get("WWW-Authenticate", "")
            answers[name] = (answer.status, answer.content_type, challenge.startswith("Bearer"))
    expect(
        "status, media type and Bearer challenge",
        answers,
        {
            "no token": (401, PROBLEM, True),
            "user token": (403, PROBLEM, False),
            "another tenant's worker token": (403, PROBLEM, False),
        },
    )


@requirement("http/3.7/4")
async def test_a_body_over_the_events_limit_is_413(world: TenantWorld, facts: Facts) -> None:
    wf = await world.workflow()
    count = facts.max_batch_events + 1
    lines = [ingest_line("token", "x", workflow_id=wf, task_id=new_id())] * count
    async with await world.subscribe(wf) as stream, world.http_ingest() as ingest:
        answer = await ingest.post(lines)
        async with world.publisher() as pub:
            await pub.token("marker", workflow_id=wf, task_id=new_id())
        first = await stream.next_event()
    expect(f"status and media type of {count} lines", (answer.status, answer.content_type),
           (413, PROBLEM))  # fmt: skip
    expect("first event after the refused body", first.data, "marker")


@requirement("http/3.7/5")
async def test_another_media_type_is_415(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.http_ingest() as ingest:
        answer = await ingest.post(
            [ingest_line("token", "x", workflow_id=wf, task_id=new_id())],
            content_type="application/json",
        )
    expect("status and media type", (answer.status, answer.content_type), (415, PROBLEM))
