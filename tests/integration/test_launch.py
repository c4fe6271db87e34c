"""The one launcher of embedded nats-server (reference_server.launch): the server's
`--nats-url embedded` and the harness's EmbeddedNats run it, and a missing binary is one error."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import nats
import pytest

from harness.cluster import ServerProcess
from harness.services import EmbeddedNats, ServiceUnavailable
from harness.world import TenantWorld
from reference_server import launch

pytestmark = pytest.mark.integration

ADMIN = "fat_" + secrets.token_urlsafe(32)


async def test_start_nats_runs_jetstream_until_terminated(tmp_path: Path) -> None:
    server = await launch.start_nats(tmp_path / "nats")
    try:
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().account_info()
            assert info.limits is not None  # JetStream answers: the server runs with -js
        finally:
            await nc.close()
    finally:
        server.terminate()
    assert not server.running
    assert not await server.ready()


async def test_a_missing_binary_is_the_same_error_for_server_and_harness(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NATS_SERVER_BIN", str(tmp_path / "nowhere" / "nats-server"))
    with pytest.raises(launch.EmbeddedUnavailable) as direct:
        await launch.start_nats(tmp_path / "nats")
    with pytest.raises(ServiceUnavailable) as harness:
        await EmbeddedNats(tmp_path).start()
    assert str(direct.value) == harness.value.reason
    assert "nats-server binary not found at $NATS_SERVER_BIN" in harness.value.reason


async def test_serve_with_embedded_nats_streams_and_exits_cleanly(
    pg_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.update(
        TASKSTREAM_DATABASE_URL=pg_url, TASKSTREAM_ADMIN_TOKEN=ADMIN,
        TASKSTREAM_NATS_URL="embedded", TASKSTREAM_DATA_DIR=str(tmp_path / "data"),
    )  # fmt: skip
    process = ServerProcess("embedded-nats", env, tmp_path)
    await process.start()
    try:
        world = await TenantWorld.create(process.http_url, process.grpc_address, ADMIN)
        wf = await world.workflow()
        async with await world.subscribe(wf) as stream, world.publisher() as pub:
            await pub.token("over the embedded broker", workflow_id=wf)
            event = await stream.next_event(timeout=10)
        await world.close()
        assert (event.event, event.data) == ("token", "over the embedded broker")
    finally:
        code = await process.stop(timeout=15)
    assert code == 0, process.log_tail(50)
    assert "Traceback" not in process.log_tail(200)
