"""Faults of the store: requests that need it answer 503 at once, open streams keep running,
and the server recovers by itself when PostgreSQL returns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from harness.services import EmbeddedPostgres
from harness.sse_client import SSEStream
from harness.world import TenantWorld
from reference_server.app import Server
from reference_server.settings import Settings
from tests.conftest import FAST

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, since the test stops it."""
    service = EmbeddedPostgres()
    await service.start()
    yield service
    await service.stop()


async def test_store_outage_is_503_and_recovers(own_postgres: EmbeddedPostgres) -> None:
    settings = Settings(database_url=own_postgres.url, http_port=0, grpc_port=0, **FAST)
    async with Server(settings) as server:
        world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
        wf = await world.workflow()
        task = await world.task(wf)
        async with world.publisher() as pub, await world.subscribe(wf) as open_stream:
            await pub.token("before", workflow_id=wf, task_id=task)
            assert (await open_stream.next_event()).data == "before"

            await own_postgres.pause()  # PostgreSQL stopped
            loop = asyncio.get_running_loop()
            began = loop.time()
            async with SSEStream.open(
                world.workflow_url(str(uuid.uuid4())), token=world.user.token
            ) as refused:
                assert refused.status == 503
                assert (await refused.problem())["status"] == 503
            assert loop.time() - began < 2
            # The open stream and cached publishers carry on without the store.
            await pub.token("during", workflow_id=wf, task_id=task)
            assert (await open_stream.next_event()).data == "during"
            # A task label never seen cannot be checked against its workflow: refused, not
            # waved through (it may name another workflow's task).
            with pytest.raises(grpc.aio.AioRpcError) as refused_label:
                await pub.token("unchecked", workflow_id=wf, task_id=str(uuid.uuid4()))
            assert refused_label.value.code() == grpc.StatusCode.UNAVAILABLE

            await own_postgres.resume()
            for _ in range(50):  # the pool reconnects on its own
                async with SSEStream.open(world.workflow_url(wf), token=world.user.token) as again:
                    if again.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert again.status == 200
        await world.close()
