"""`reference-server serve --workers 2`: two processes on the same ports, sharing streams through
the embedded NATS, metrics summed over both, and SIGTERM stopping everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from harness.publisher import Publisher
from harness.services_nats import EmbeddedNats
from harness.world import TenantWorld

pytestmark = pytest.mark.integration
PUBLISHED = 'flovyn_stream_events_published_total{type="TOKEN"}'
_READY = re.compile(r"READY http=(\S+) grpc=(\S+) workers=2")


def _workers(pid: int) -> list[int]:
    """The supervisor's children that are server processes."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"reference_server.cli" in cmdline:
            found.append(child)
    return found


Supervisor = tuple[subprocess.Popen[str], str, str, str]  # process, HTTP URL, gRPC, admin token


@contextlib.asynccontextmanager
async def _supervisor(*args: str) -> AsyncIterator[Supervisor]:
    admin = "fat_" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.pop("DATABASE_URL", None)
    env.pop("NATS_URL", None)
    env.update(TASKSTREAM_ADMIN_TOKEN=admin, GRPC_VERBOSITY="ERROR")
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [sys.executable, "-m", "reference_server.cli", "serve", "--workers", "2",
         "--http-port", "0", "--grpc-port", "0", *args],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(_ready_line, proc), 90)
        match = _READY.search(line)
        assert match, line
        yield proc, match[1], match[2], admin
    finally:
        if proc.poll() is None:  # SIGTERM first: the supervisor removes what it made
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    """Two workers on the supervisor's own embedded PostgreSQL and NATS."""
    async with _supervisor("--ephemeral", "--data-dir", str(tmp_path)) as running:
        yield running


@pytest.fixture
async def supervisor_on_services(pg_url: str, tmp_path: Path) -> AsyncIterator[Supervisor]:
    """Two workers on the test session's PostgreSQL and a NATS of the test's own (so a
    supervisor killed by the test leaves no service of its own behind)."""
    args = ("--database-url", pg_url, "--data-dir", str(tmp_path))
    async with EmbeddedNats() as broker, _supervisor(*args, "--nats-url", broker.url) as running:
        yield running


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _wait_gone(pids: list[int], within: float) -> None:
    deadline = time.monotonic() + within
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _ready_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return line
    return "(exited before READY)"


async def test_two_workers_share_ports_streams_and_metrics(
    supervisor: Supervisor,
) -> None:
    proc, http_url, grpc_address, admin = supervisor
    workers = _workers(proc.pid)
    assert len(workers) == 2
    world = await TenantWorld.create(http_url, grpc_address, admin)
    wf = await world.workflow()
    # Every stream is a new connection, which the kernel gives to either worker.
    streams = [await world.subscribe(wf) for _ in range(8)]
    before = (await world.metrics()).get(PUBLISHED, 0.0)
    for n in range(16):  # a new channel (connection) per event: both workers publish
        async with Publisher(grpc_address, world.worker.token) as pub:
            assert await pub.token(f"e{n}", workflow_id=wf, task_id=str(uuid.uuid4()))
    for stream in streams:
        got = [e.data for e in await stream.next_events(16, timeout=10)]
        assert got == [f"e{n}" for n in range(16)]
        await stream.close()
    # Whichever worker answers the scrape, it counts both workers' events.
    for _ in range(4):
        metrics = await world.metrics()
        assert metrics[PUBLISHED] - before == 16
    await world.close()

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert not _alive(workers)  # the supervisor waited for them before exiting


async def test_workers_end_with_a_supervisor_that_dies(supervisor_on_services: Supervisor) -> None:
    proc, *_ = supervisor_on_services
    workers = _workers(proc.pid)
    assert len(workers) == 2
    proc.kill()  # SIGKILL: no chance to stop them; their stdin pipe closes
    proc.wait()
    await asyncio.to_thread(_wait_gone, workers, 30)
    assert not _alive(workers)


async def test_a_worker_that_dies_is_replaced(
    supervisor: Supervisor,
) -> None:
    proc, http_url, _grpc, _admin = supervisor
    victim = _workers(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = _workers(proc.pid)
        if len(current) == 2 and victim not in current:
            break
        await asyncio.sleep(0.1)
    assert len(_workers(proc.pid)) == 2 and victim not in _workers(proc.pid)
    async with aiohttp.ClientSession() as http:
        for _ in range(10):  # new connections, spread over both workers
            async with http.get(f"{http_url}/health/ready", headers={"Connection": "close"}) as r:
                assert r.status == 200
