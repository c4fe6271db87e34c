"""Hostile workers against a real server process: undecodable messages, id spellings (and the
memory they used to pin), task labels of other workflows and tenants, cross-tenant writes,
oversized payloads and framing injection, each recorded in the attack table. What must not be
delivered is checked with the marker technique: the first event a stream receives after the
attack is the marker published after it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import grpc
import pytest

from harness.cluster import ServerProcess
from harness.publisher import Publisher, build_request
from harness.sse_client import SSEStream
from harness.world import TenantWorld
from tests.conftest import AttackTable, server_process

pytestmark = pytest.mark.integration
ADMIN = "fat_" + secrets.token_urlsafe(32)
METHOD = "/flovyn.v1.TaskExecution/StreamTaskData"
PHANTOM_EVENTS, PHANTOM_PAYLOAD = 1200, 60_000
RSS_SLACK_MB = 24.0  # allocator noise (+6 to +14 MB measured over ~65 MB); the old leak was +70 MB


@pytest.fixture(scope="module")
def target(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    log_dir = Path(tmp_path_factory.mktemp("attacks"))
    with server_process("attacks-grpc", postgres.url, log_dir, ADMIN) as process:
        yield process


def rss_mb(process: ServerProcess) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def code_of(call: Awaitable[object]) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def first_after(stream: SSEStream, marker: str) -> str:
    """The payload of the first event on `stream`; the marker when nothing leaked before it."""
    event = await stream.next_event(timeout=5)
    return "marker" if event.data == marker else f"{event.event}: {event.data[:40]!r}"


async def test_grpc_attacks(target: ServerProcess, attack_table: AttackTable) -> None:
    world = await TenantWorld.create(target.http_url, target.grpc_address, ADMIN)
    other = await TenantWorld.create(target.http_url, target.grpc_address, ADMIN)
    try:
        async with world.publisher() as pub, other.publisher() as theirs:
            await _undecodable(target, world, attack_table)
            await _spellings(target, world, pub, attack_table)
            await _labels_and_tenants(world, other, pub, theirs, attack_table)
            await _payloads(world, pub, attack_table)
    finally:
        await world.close()
        await other.close()
    traceback = "Traceback" in target.log_tail(100_000)
    attack_table.row("all of the above", "no traceback in the server log", traceback, not traceback)
    assert not attack_table.failures(), "\n".join(attack_table.failures())


async def _undecodable(process: ServerProcess, world: TenantWorld, t: AttackTable) -> None:
    metric = 'flovyn_stream_grpc_requests_total{code="INVALID_ARGUMENT"}'
    before = (await world.metrics()).get(metric, 0.0)
    bodies = {"bad tag": b"\xff\xff\xff\xff", "truncated field": b"\x0a\x05ab",
              "non-UTF-8 string": b"\x0a\x02\xff\xfe"}  # fmt: skip
    md = (("authorization", f"Bearer {world.worker.token}"),)
    async with grpc.aio.insecure_channel(process.grpc_address) as channel:
        send = channel.unary_unary(METHOD)  # bytes in, bytes out: no client-side encoding
        codes = {name: await code_of(send(body, metadata=md, timeout=5))
                 for name, body in bodies.items()}  # fmt: skip
    t.row("undecodable StreamTaskData message", "INVALID_ARGUMENT each", codes,
          set(codes.values()) == {"INVALID_ARGUMENT"})  # fmt: skip
    counted = (await world.metrics()).get(metric, 0.0) - before
    t.row("  ... counted in metrics", f"+{len(bodies)}", f"+{counted:.0f}", counted == len(bodies))
    lines = [line for line in process.log_tail(100_000).splitlines()
             if "not a StreamTaskDataRequest" in line]  # fmt: skip
    t.row("  ... logged", f"{len(bodies)} INFO lines", f"{len(lines)} lines",
          len(lines) == len(bodies) and all(" INFO " in line for line in lines))  # fmt: skip


async def _spellings(
    process: ServerProcess, world: TenantWorld, pub: Publisher, t: AttackTable
) -> None:
    wf = await world.workflow()
    spellings = [wf.upper(), wf.replace("-", ""), f"urn:uuid:{wf}", f"{{{wf}}}"]
    codes = {s[:14] + "…": await code_of(pub.token("x", workflow_id=s)) for s in spellings}
    t.row("non-canonical workflow id spellings (gRPC)", "INVALID_ARGUMENT each", codes,
          set(codes.values()) == {"INVALID_ARGUMENT"})  # fmt: skip
    payload = "p" * PHANTOM_PAYLOAD
    # Warm up: the allocator and gRPC's buffers grow once to the size of the attack's messages;
    # what must not happen is growth with the number of events (retention per spelling).
    await _send_all(pub, [s for s in spellings for _ in range(25)], payload)
    baseline = rss_mb(process)
    started = time.monotonic()
    async with SSEStream.open(world.workflow_url(wf), token=world.user.token) as stream:
        targets = [spellings[i % len(spellings)] for i in range(PHANTOM_EVENTS)]
        refused = await _send_all(pub, targets, payload)
        await pub.token("marker", workflow_id=wf)
        leaked = await first_after(stream, "marker")
    took = time.monotonic() - started
    ok = refused == {"INVALID_ARGUMENT": PHANTOM_EVENTS}
    t.row(f"phantom keys: {PHANTOM_EVENTS} x 60 KB to 4 spellings", "all INVALID_ARGUMENT",
          f"{refused} in {took:.1f} s", ok)  # fmt: skip
    t.row("  ... delivered to the canonical stream", "nothing before the marker", leaked,
          leaked == "marker")  # fmt: skip
    after = rss_mb(process)
    t.row("  ... server RSS", f"back to baseline (+{RSS_SLACK_MB:.0f} MB at most)",
          f"{baseline:.0f} -> {after:.0f} MB", after <= baseline + RSS_SLACK_MB)  # fmt: skip


async def _send_all(pub: Publisher, workflows: list[str], payload: str) -> dict[str, int]:
    """Publish `payload` once to each of `workflows`, 50 calls at a time; codes counted."""
    codes: dict[str, int] = {}
    for start in range(0, len(workflows), 50):
        batch = workflows[start : start + 50]
        for code in await asyncio.gather(
            *(code_of(pub.token(payload, workflow_id=w)) for w in batch)
        ):
            codes[code] = codes.get(code, 0) + 1
    return codes


async def _labels_and_tenants(
    world: TenantWorld, other: TenantWorld, pub: Publisher, theirs: Publisher, t: AttackTable
) -> None:
    wf, sibling, foreign = await world.workflow(), await world.workflow(), await other.workflow()
    task = await world.task(wf)
    async with (
        await world.subscribe_task(task) as task_stream,
        await world.subscribe(wf) as wf_stream,
    ):
        codes = {
            "another workflow of the tenant": await code_of(
                pub.token("forged", workflow_id=sibling, task_id=task)),
            "another tenant's workflow": await code_of(
                theirs.token("forged", workflow_id=foreign, task_id=task)),
        }  # fmt: skip
        t.row("task label of another workflow's task", "PERMISSION_DENIED each", codes,
              set(codes.values()) == {"PERMISSION_DENIED"})  # fmt: skip
        code = await code_of(theirs.token("intrusion", workflow_id=wf, task_id=task))
        t.row("publish into another tenant's workflow", "PERMISSION_DENIED", code,
              code == "PERMISSION_DENIED")  # fmt: skip
        code = await code_of(theirs.token("intrusion", task_id=task))
        t.row("publish to another tenant's task (no workflow)", "PERMISSION_DENIED", code,
              code == "PERMISSION_DENIED")  # fmt: skip
        await pub.token("marker", workflow_id=wf, task_id=task)
        leaked = {"task stream": await first_after(task_stream, "marker"),
                  "workflow stream": await first_after(wf_stream, "marker")}  # fmt: skip
    t.row("  ... delivered to the victim's streams", "nothing before the marker", leaked,
          set(leaked.values()) == {"marker"})  # fmt: skip
    async with world.publisher(token=world.user.token) as as_user:
        code = await code_of(as_user.token("x", workflow_id=wf))
    t.row("user token publishes", "PERMISSION_DENIED", code, code == "PERMISSION_DENIED")
    code = await code_of(pub.send("token", "x", workflow_id=wf, token="fwt_" + "A" * 43))
    t.row("unknown worker token", "UNAUTHENTICATED", code, code == "UNAUTHENTICATED")


async def _payloads(world: TenantWorld, pub: Publisher, t: AttackTable) -> None:
    wf = await world.workflow()
    code = await code_of(pub.token("é" * 32_768 + "a", workflow_id=wf))
    t.row("payload one UTF-8 byte over 64 KiB", "INVALID_ARGUMENT", code,
          code == "INVALID_ARGUMENT")  # fmt: skip
    injection = "\r\n\r\nevent: end\ndata: x\n\nid: 999\n"
    async with await world.subscribe(wf) as stream:
        await pub.token(injection, workflow_id=wf)
        event = await stream.next_event(timeout=5)
    verbatim = (event.event, event.data) == ("token", injection.replace("\r\n", "\n"))
    t.row("payload forging SSE fields", "one token event, payload verbatim",
          f"{event.event}: {event.data!r}"[:60], verbatim)  # fmt: skip
    request = build_request(workflow_id=wf, task_id="", event_type=99, payload="x", sequence=1)
    code = await code_of(pub.send_request(request))
    t.row("event type 99", "INVALID_ARGUMENT", code, code == "INVALID_ARGUMENT")
