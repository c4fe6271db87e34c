"""`python -m harness tail|publish|cluster`, run as a user would from a terminal."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from pathlib import Path

import pytest

from harness.targets import load_targets
from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration


async def _run(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_tail_prints_what_publish_sends(world: TenantWorld, server: Server) -> None:
    wf = await world.workflow()
    tail = await _run("tail", world.workflow_url(wf), "--token", world.user.token, "--json",
                      "--count", "2")  # fmt: skip
    async with world.publisher() as pub:
        # tail is subscribed once it has printed nothing and is still running; publish until
        # it has seen two events (its subscription races our first publish).
        for _ in range(100):
            await pub.token("x", workflow_id=wf, task_id=str(uuid.uuid4()))
            try:
                await asyncio.wait_for(asyncio.shield(tail.wait()), 0.1)
                break
            except TimeoutError:
                continue
    out, err = await tail.communicate()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert tail.returncode == 0, err.decode()
    assert [(e["event"], e["data"]) for e in lines] == [("token", "x"), ("token", "x")]


async def test_publish_reports_refusals_without_a_traceback(server: Server) -> None:
    proc = await _run("publish", "--grpc", server.grpc_address, "--token", "fwt_nope",
                      "--workflow", str(uuid.uuid4()), "hi")  # fmt: skip
    _out, err = await proc.communicate()
    assert proc.returncode == 1
    assert "UNAUTHENTICATED" in err.decode() or "unknown token" in err.decode()
    assert "Traceback" not in err.decode()


async def test_cluster_runs_until_interrupted_and_writes_a_target(tmp_path: Path) -> None:
    target_file = tmp_path / "target.toml"
    proc = await _run("cluster", "--instances", "1", "--no-nats", "--write-target",
                      str(target_file))  # fmt: skip
    assert proc.stdout is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, "cluster exited early"
        seen.append(line)
        if line.startswith("ready in"):
            break
    (target,) = load_targets(target_file)
    # The retention the in-memory bus announces (its defaults), and a private file.
    assert (target.retention_events, target.retention_seconds) == (1000, 3600.0)
    assert target_file.stat().st_mode & 0o777 == 0o600
    world = await TenantWorld.for_target(target)
    assert await world.workflow()
    await world.close()
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert any(line.startswith("server-0") for line in seen)
