"""The server as a process: `serve --bootstrap` as a new user runs it, and SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import ServerProcess
from harness.sse_client import SSEStream
from harness.world import TenantWorld

pytestmark = pytest.mark.integration
ADMIN = "fat_" + secrets.token_urlsafe(32)


def _env(pg_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.update(TASKSTREAM_DATABASE_URL=pg_url, TASKSTREAM_ADMIN_TOKEN=ADMIN, **extra)
    return env


async def test_sigterm_ends_open_streams_and_exits_zero(pg_url: str, tmp_path: Path) -> None:
    process = ServerProcess("sigterm", _env(pg_url), tmp_path)
    await process.start()
    world = await TenantWorld.create(process.http_url, process.grpc_address, ADMIN)
    wf = await world.workflow()
    streams = [await world.subscribe(wf) for _ in range(3)]
    loop = asyncio.get_running_loop()
    began = loop.time()
    code = await process.stop(timeout=10)
    took = loop.time() - began
    for stream in streams:
        await stream.wait_closed(1)
        await stream.close()
    await world.close()
    log = process.log_tail(200)
    assert code == 0, log
    assert took < 5, f"shutdown took {took:.1f}s"
    assert "Traceback" not in log


async def test_bootstrap_prints_commands_that_work(tmp_path: Path) -> None:
    """The README's quickstart, automated: serve --bootstrap, then the printed curl (here its
    equivalent) sees what the printed publish command sends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.pop("DATABASE_URL", None)
    env.pop("NATS_URL", None)
    args = [sys.executable, "-m", "reference_server.cli", "serve", "--bootstrap", "--ephemeral",
            "--http-port", "0", "--grpc-port", "0"]  # fmt: skip
    out_path = tmp_path / "out.txt"
    with out_path.open("wb") as out:
        server = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            args, env=env, stdout=out, stderr=subprocess.DEVNULL, cwd=tmp_path
        )
    try:
        for _ in range(600):
            text = out_path.read_text()
            if "READY" in text:
                break
            assert server.poll() is None, text
            await asyncio.sleep(0.05)
        text = out_path.read_text()
        curl = next(line.strip() for line in text.splitlines() if line.strip().startswith("curl"))
        publish = next(line.strip() for line in text.splitlines() if "harness publish" in line)
        demo = next(line.strip() for line in text.splitlines() if "/demo#" in line)
        token = re.search(r"Bearer (\S+)'", curl)
        url = curl.split()[-1]
        assert token is not None
        async with SSEStream.open(url, token=token.group(1)) as stream:
            assert stream.status == 200
            proc = await asyncio.create_subprocess_exec(*shlex.split(publish), cwd=tmp_path)
            assert await proc.wait() == 0
            event = await stream.next_event()
        assert (event.event, event.data) == ("token", "hello from the bootstrap")
        # The printed /demo URL carries a stream token that opens the same workflow's stream.
        fragment = dict(part.split("=", 1) for part in demo.split("#", 1)[1].split("&"))
        assert fragment["token"].startswith("fst_") and url.endswith(fragment["workflow"])
        base = demo.split("/demo#")[0]
        async with SSEStream.open(
            f"{base}/api/tenants/{fragment['tenant']}/stream/workflows/{fragment['workflow']}"
            f"?access_token={fragment['token']}"
        ) as by_demo_token:
            assert by_demo_token.status == 200
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
