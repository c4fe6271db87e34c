"""Hostile HTTP clients against a real server process: every class of attack of both hardening
rounds (framing, credentials, stream tokens, tenant isolation, id spellings, bodies, slowloris,
limits, stalled readers), each recorded as attack / expected / observed in the attack table that
the terminal summary prints. Every row is checked before the test asserts, so one regression does
not hide the others."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from conformance.wire import sse_answer
from harness.cluster import ServerProcess
from harness.sse_client import SSEStream, StreamClosed
from harness.wire.stalled import StalledReader
from harness.world import TenantWorld
from tests.conftest import AttackTable, server_process

pytestmark = pytest.mark.integration
ADMIN = "fat_" + secrets.token_urlsafe(32)
HEAD_TIMEOUT = 1.0
MAX_UNAUTHENTICATED = 40
BURST = 300  # events of 60 KB: more than socket buffers hold
LIMITS = {"request_head_timeout": str(HEAD_TIMEOUT), "subscriber_buffer": "16",
          "max_unauthenticated_connections": str(MAX_UNAUTHENTICATED),
          "max_streams_per_tenant": "4"}  # fmt: skip


@pytest.fixture(scope="module")
def target(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    log_dir = Path(tmp_path_factory.mktemp("attacks"))
    with server_process("attacks-http", postgres.url, log_dir, ADMIN, **LIMITS) as process:
        yield process


def _address(process: ServerProcess) -> tuple[str, int]:
    return "127.0.0.1", process.http_port


async def raw(process: ServerProcess, request: bytes) -> tuple[int, bytes]:
    """Send bytes no client library would, return (status, whole response)."""
    reader, writer = await asyncio.open_connection(*_address(process))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return int(head.split()[1]), head
    finally:
        writer.close()


async def seconds_until_closed(process: ServerProcess, drip: list[bytes], every: float) -> float:
    """Open a socket, send `drip` one piece per `every` seconds, and time until the server
    closes it (capped at 10 s)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*_address(process))
    try:
        for piece in [*drip, *([b""] * 100)]:
            if piece:
                writer.write(piece)
            try:
                if await asyncio.wait_for(reader.read(1024), every) == b"":
                    break
            except TimeoutError:
                pass
            except ConnectionError:
                break
            if time.monotonic() - started > 10:
                break
    finally:
        writer.close()
    return time.monotonic() - started


async def test_http_attacks(target: ServerProcess, attack_table: AttackTable) -> None:
    world = await TenantWorld.create(target.http_url, target.grpc_address, ADMIN)
    other = await TenantWorld.create(target.http_url, target.grpc_address, ADMIN)
    try:
        await _credentials(target, world, attack_table)
        await _stream_tokens(world, attack_table)
        await _isolation_and_ids(world, other, attack_table)
        await _bodies_and_headers(target, world, attack_table)
        await _slowloris(target, world, attack_table)
        await _limits(world, attack_table)
    finally:
        await world.close()
        await other.close()
    traceback = "Traceback" in target.log_tail(100_000)
    attack_table.row("all of the above", "no traceback in the server log", traceback, not traceback)
    assert not attack_table.failures(), "\n".join(attack_table.failures())


async def _credentials(process: ServerProcess, world: TenantWorld, t: AttackTable) -> None:
    wf = await world.workflow()
    path = f"/api/tenants/{world.slug}/stream/workflows/{wf}"
    for where, line in (("SSE", f"GET {path}"), ("management", "POST /api/admin/tenants")):
        head = f"{line} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n".encode()
        status, _ = await raw(process, head + b"Authorization: Bearer fut_\xff\xfe\x80\r\n\r\n")
        t.row(f"non-UTF-8 byte in Authorization ({where})", "401", status, status == 401)
    url = world.workflow_url(wf, query={"access_token": world.user.token})
    status = (await sse_answer(url, token=world.user.token)).status
    t.row("user token in the URL with a valid header", "401", status, status == 401)
    status = (await sse_answer(world.workflow_url(wf), token=ADMIN)).status
    t.row("admin token opens a tenant's stream", "403", status, status == 403)
    status = (await sse_answer(world.workflow_url(wf), token="fut_" + "A" * 43)).status
    t.row("unknown token", "401", status, status == 401)
    weak = subprocess.run(  # noqa: ASYNC221 - exits at settings validation
        [sys.executable, "-m", "reference_server.cli", "serve", "--admin-token", "h" * 16],
        capture_output=True, timeout=60, env={**os.environ, "TASKSTREAM_ADMIN_TOKEN": ""},
    )  # fmt: skip
    t.row("16-character repeat as admin token", "refused at start", f"exit {weak.returncode}",
          weak.returncode != 0 and b"admin-token" in weak.stderr)  # fmt: skip


async def _ended_by_revocation(stream: SSEStream) -> tuple[str, bool]:
    """(what happened, whether `auth-expired` arrived within 5 s)."""
    started = time.monotonic()
    try:
        event = (await stream.next_event(timeout=8)).event
    except (TimeoutError, StreamClosed) as error:
        event = f"no auth-expired ({type(error).__name__})"
    took = time.monotonic() - started
    return f"{event} after {took:.1f} s", event == "auth-expired" and took < 5


async def _stream_tokens(world: TenantWorld, t: AttackTable) -> None:
    api = world.api
    assert hasattr(api, "revoke_stream_token")
    wf = await world.workflow()
    issued = await api.issue_stream_token(world.slug, workflow=wf, minted_with=world.user.token)
    t.row("stream token issued", "carries an id", issued.id or "(none)", bool(issued.id))
    url = world.workflow_url(wf, query={"access_token": issued.token})
    async with SSEStream.open(url) as stream:
        await api.revoke_stream_token(world.slug, issued.id, token=world.user.token)
        observed, ok = await _ended_by_revocation(stream)
    t.row("open stream of a revoked stream token", "auth-expired within 5 s", observed, ok)
    status = (await sse_answer(url)).status
    t.row("revoked stream token reused", "401", status, status == 401)

    minter = await api.create_token(world.slug, "user")
    issued = await api.issue_stream_token(world.slug, workflow=wf, minted_with=minter.token)
    url = world.workflow_url(wf, query={"access_token": issued.token})
    async with SSEStream.open(url) as stream:
        await api.revoke_token(minter.id)
        observed, ok = await _ended_by_revocation(stream)
    t.row("stream token's minting user token revoked", "auth-expired within 5 s", observed, ok)
    status = (await sse_answer(url)).status
    t.row("stream token of a revoked user token reused", "401", status, status == 401)


async def _isolation_and_ids(world: TenantWorld, other: TenantWorld, t: AttackTable) -> None:
    wf = await world.workflow()
    status = (await sse_answer(world.workflow_url(wf), token=other.user.token)).status
    t.row("another tenant's user token on a workflow", "403", status, status == 403)
    theirs = await other.workflow()
    url = world.url(f"workflows/{theirs}").replace(world.slug, other.slug)
    status = (await sse_answer(url, token=world.user.token)).status
    t.row("another tenant's path with own token", "403", status, status == 403)
    spellings = {"upper case": wf.upper(), "no hyphens": wf.replace("-", ""),
                 "urn:uuid:": f"urn:uuid:{wf}", "braces": f"{{{wf}}}"}  # fmt: skip
    statuses = {name: (await sse_answer(world.workflow_url(spelled), token=world.user.token)).status
                for name, spelled in spellings.items()}  # fmt: skip
    t.row("non-canonical workflow id spellings (SSE)", "400 each", statuses,
          set(statuses.values()) == {400})  # fmt: skip


async def _bodies_and_headers(process: ServerProcess, world: TenantWorld, t: AttackTable) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    base = process.http_url
    async with aiohttp.ClientSession(headers=headers) as session:
        deep = b'{"slug":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        async with session.post(f"{base}/api/admin/tenants", data=deep) as response:
            t.row("management body nested 100,000 deep", "400", response.status,
                  response.status == 400)  # fmt: skip
        async with session.post(f"{base}/api/admin/tenants", json={"slug": "abc\n"}) as response:
            t.row("slug with a trailing newline", "400", response.status, response.status == 400)
        path = f"{base}/api/tenants/{world.slug}/workflow-executions"
        async with session.post(path, json={"kind": "k\n"}) as response:
            t.row("kind with a trailing newline", "400", response.status, response.status == 400)
    for name, value in (("non-ASCII", "r\xe9q"), ("over 128 characters", "r" * 129)):
        status, head = await raw(process, b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: "
                                 + value.encode() + b"\r\n\r\n")  # fmt: skip
        echoed = value.encode() in head
        t.row(f"X-Request-ID {name}", "replaced", "echoed" if echoed else "replaced", not echoed)
    for name, line in (("path traversal", "GET /api/tenants/../admin/tenants HTTP/1.1"),
                       ("20 KB header", "GET / HTTP/1.1\r\nX-Big: " + "b" * 20000)):  # fmt: skip
        status, _ = await raw(process, f"{line}\r\nHost: x\r\n\r\n".encode())
        t.row(name, "4xx", status, 400 <= status < 500)


async def _slowloris(process: ServerProcess, world: TenantWorld, t: AttackTable) -> None:
    wf = await world.workflow()
    bound = HEAD_TIMEOUT + 1.5
    drips = {
        "idle socket": ([], 0.2),
        "half-sent request line": ([b"GET /health/li"], 0.2),
        "one header byte every 0.2 s": ([b"GET /health/live HTTP/1.1\r\n", *[b"X"] * 60], 0.2),
        "half a second request": ([b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
                                   b"GET /health/li"], 0.2),
    }  # fmt: skip
    for name, (drip, every) in drips.items():
        took = await seconds_until_closed(process, drip, every)
        t.row(f"slowloris: {name}", f"closed within {bound:.1f} s", f"closed after {took:.1f} s",
              took <= bound)  # fmt: skip
    answer = await _last_of(process, [None] * MAX_UNAUTHENTICATED)
    t.row(f"{MAX_UNAUTHENTICATED} idle connections, then one more", "503 for the last",
          answer, answer.startswith("503"))  # fmt: skip
    get = (f"GET /api/tenants/{world.slug}/workflow-executions/{wf} HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {world.user.token}\r\n\r\n").encode()  # fmt: skip
    answer = await _last_of(process, [get] * MAX_UNAUTHENTICATED)
    t.row(f"{MAX_UNAUTHENTICATED} authenticated keep-alive connections, then one more",
          "admitted (closed at the head timeout)", answer, answer == "closed")  # fmt: skip


async def _last_of(process: ServerProcess, first: list[bytes | None]) -> str:
    """Open one connection per item of `first` (sending it and reading the answer when it is a
    request), keep them open, then open one more idle connection: what does it get?"""
    opened: list[asyncio.StreamWriter] = []
    try:
        for request in first:
            reader, writer = await asyncio.open_connection(*_address(process))
            opened.append(writer)
            if request is not None:
                writer.write(request)
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        reader, writer = await asyncio.open_connection(*_address(process))
        opened.append(writer)
        try:
            answer = await asyncio.wait_for(reader.read(100), HEAD_TIMEOUT + 2)
        except (TimeoutError, ConnectionError) as error:
            return type(error).__name__
        return answer.split(b"\r\n")[0].decode().removeprefix("HTTP/1.1 ") or "closed"
    finally:
        for writer in opened:
            writer.close()


async def _limits(world: TenantWorld, t: AttackTable) -> None:
    wf = await world.workflow()
    url = world.workflow_url(wf)
    async with SSEStream.open(url, token=world.user.token) as quiet, world.publisher() as pub:
        await asyncio.sleep(2 * HEAD_TIMEOUT)  # the time that passes is what is tested
        await pub.token("still here", workflow_id=wf)
        alive = (await quiet.next_event(timeout=5)).data == "still here"
    t.row("(control) a quiet stream past the head timeout", "stays open", alive, alive)
    streams = [await SSEStream.open(url, token=world.user.token) for _ in range(4)]
    try:
        status = (await sse_answer(url, token=world.user.token)).status
        t.row("5th stream of a tenant limited to 4", "429", status, status == 429)
    finally:
        for stream in streams:
            await stream.close()
    stalled = await StalledReader.open(url, world.user.token, receive_buffer=2048)
    try:
        async with SSEStream.open(url, token=world.user.token) as healthy, world.publisher() as pub:
            for i in range(BURST):
                await pub.token(f"{i:04d}" + "x" * 60_000, workflow_id=wf)
            drained = await stalled.drain(events=BURST, event_size=60_000, timeout=15)
            received = len(await healthy.next_events(BURST, timeout=15))
    finally:
        stalled.close()
    t.row("subscriber that stops reading (18 MB burst)", "disconnected", drained.how,
          drained.ended and drained.events < BURST)  # fmt: skip
    t.row("reader beside a stalled one", f"receives all {BURST}", received, received == BURST)
