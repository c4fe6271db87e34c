"""Load on the edges, on a real server process: thousands of idle streams in bounded memory, a
connect/disconnect storm that leaves nothing behind, and SIGTERM under load."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.cluster import ServerProcess
from harness.world import TenantWorld

pytestmark = pytest.mark.integration
ADMIN = "fat_" + secrets.token_urlsafe(32)


@pytest.fixture
async def process(postgres, tmp_path: Path) -> AsyncIterator[ServerProcess]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.update(
        TASKSTREAM_DATABASE_URL=postgres.url,
        TASKSTREAM_ADMIN_TOKEN=ADMIN,
        TASKSTREAM_MAX_STREAMS_PER_TENANT="10000",
        TASKSTREAM_KEEPALIVE_INTERVAL="5",
    )
    server = ServerProcess("edges", env, tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def world(process: ServerProcess) -> AsyncIterator[TenantWorld]:
    w = await TenantWorld.create(process.http_url, process.grpc_address, ADMIN)
    yield w
    await w.close()


async def _open_raw(
    process: ServerProcess, path: str, token: str, last_id: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", process.http_port)
    extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return reader, writer


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _gauge(world: TenantWorld) -> float:
    samples = await world.metrics()
    return sum(v for k, v in samples.items() if k.startswith("flovyn_stream_subscribers_active"))


async def _wait_gauge_zero(world: TenantWorld) -> None:
    for _ in range(40):
        if await _gauge(world) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscriber gauge stuck at {await _gauge(world)}")


async def test_connect_disconnect_storm_leaves_no_subscriber(
    process: ServerProcess, world: TenantWorld
) -> None:
    workflows = [await world.workflow() for _ in range(10)]
    paths = [world.workflow_url(wf).removeprefix(process.http_url) for wf in workflows]

    async def churn(n: int) -> None:
        _reader, writer = await _open_raw(
            process, paths[n % 10], world.user.token, last_id="1" if n % 2 else None
        )
        writer.close()
        await writer.wait_closed()

    for wave in range(6):
        await asyncio.gather(*(churn(wave * 100 + i) for i in range(100)))
    await _wait_gauge_zero(world)


async def test_five_thousand_idle_streams_in_bounded_memory(
    process: ServerProcess, world: TenantWorld
) -> None:
    assert process.pid is not None
    workflows = [await world.workflow() for _ in range(50)]
    paths = [world.workflow_url(wf).removeprefix(process.http_url) for wf in workflows]
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open_many(n: int) -> None:
        for start in range(0, n, 250):
            batch = range(start, min(n, start + 250))
            held.extend(
                await asyncio.gather(
                    *(_open_raw(process, paths[i % 50], world.user.token) for i in batch)
                )
            )

    await open_many(200)  # warm-up: allocator pools, caches
    baseline = _rss_kib(process.pid)
    await open_many(4800)
    assert await _gauge(world) == 5000
    per_stream = (_rss_kib(process.pid) - baseline) / 4800
    print(f"\nRSS per idle SSE stream: {per_stream:.1f} KiB (5,000 streams)")
    async with world.publisher() as pub:  # still serving while holding them
        assert await pub.token("alive", workflow_id=workflows[0], task_id=str(uuid.uuid4()))
    for _reader, writer in held:
        writer.close()
    await _wait_gauge_zero(world)
    assert per_stream <= 30, f"{per_stream:.1f} KiB per idle stream"


async def test_sigterm_under_load_is_clean(process: ServerProcess, world: TenantWorld) -> None:
    wf = await world.workflow()
    streams = [await world.subscribe(wf) for _ in range(20)]
    stop = asyncio.Event()

    async def publish() -> None:
        async with world.publisher() as pub:
            while not stop.is_set():
                try:
                    await pub.token("load", workflow_id=wf, task_id=str(uuid.uuid4()))
                except Exception:  # the server is going away: expected
                    return

    publishers = [asyncio.create_task(publish()) for _ in range(4)]
    await streams[0].next_events(20)
    loop = asyncio.get_running_loop()
    began = loop.time()
    code = await process.stop(timeout=10)
    took = loop.time() - began
    stop.set()
    await asyncio.gather(*publishers)
    for stream in streams:
        await stream.close()
    assert code == 0
    assert took < 5
    assert "Traceback" not in process.log_tail(500)
