"""``TestHarness``: one object that starts (or finds) a server, makes a tenant, and hands out
the clients a test needs, in the shape of the original implementation plan's Rust harness::

    harness = await TestHarness.start()            # the embedded cluster, or TestHarness.start(
    workflow_id = await harness.create_workflow("test-wf")      #   "my-targets.toml")
    async with await harness.subscribe(workflow_id) as stream:
        async with harness.publisher() as pub:
            await pub.token("hi", workflow_id=workflow_id, task_id=str(uuid.uuid4()))
        assert (await stream.next_event()).data == "hi"
    await harness.close()

It is built from the pieces that exist (``ReferenceCluster``, ``Target``, ``TenantWorld``,
the SSE and gRPC clients): nothing here talks to the wire itself. :class:`SyncTestHarness` is
the same for tests that are not asyncio (it runs the asynchronous one on a private loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import grpc

from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

from .closing import AsyncClosing
from .cluster import ReferenceCluster
from .publisher import Publisher
from .sse_client import SSEStream
from .targets import Target, TargetError, load_targets
from .wire.grpc_calls import aio_channel
from .world import TenantWorld

__all__ = ["TestHarness"]


def resolve_target(target: str | Path | Target, name: str | None) -> Target:
    """A target given as itself, or as a target file (its target ``name``, else the first)."""
    if isinstance(target, Target):
        return target
    targets = load_targets(target)
    if name is None:
        return targets[0]
    for candidate in targets:
        if candidate.name == name:
            return candidate
    raise TargetError(f"{target}: no target named {name!r}")


class TestHarness(AsyncClosing):
    """A target under test with a fresh tenant (user and worker tokens) on it.

    Start it with :meth:`start`; close it with :meth:`close` or ``async with``. Closing stops
    the embedded cluster if the harness started one.
    """

    __test__ = False  # a helper, not a pytest test class

    def __init__(
        self, target: Target, world: TenantWorld, cluster: ReferenceCluster | None = None
    ) -> None:
        self.target = target
        self.world = world
        self.cluster = cluster
        self._channel: grpc.aio.Channel | None = None

    @classmethod
    async def start(
        cls,
        target: str | Path | Target | None = None,
        *,
        name: str | None = None,
        instances: int = 1,
        settings: Mapping[str, Any] | None = None,
    ) -> Self:
        """Test ``target`` (a :class:`Target` or a target file; ``name`` picks one of its
        targets), or else start an embedded cluster: PostgreSQL, NATS JetStream when
        ``instances`` > 1, and ``instances`` reference servers with ``settings``."""
        cluster = None
        if target is None:
            cluster = ReferenceCluster(
                instances=instances, nats=instances > 1, settings=dict(settings or {})
            )
            try:
                await cluster.start()
            except BaseException:
                await cluster.stop()
                raise
            resolved = cluster.target()
        else:
            resolved = resolve_target(target, name)
        try:
            world = await TenantWorld.for_target(resolved)
        except BaseException:
            if cluster is not None:
                await cluster.stop()
            raise
        return cls(resolved, world, cluster)

    async def close(self) -> None:
        """Close the clients, and stop the embedded cluster if this harness started it."""
        try:
            if self._channel is not None:
                await self._channel.close(None)
                self._channel = None
            await self.world.close()
        finally:
            if self.cluster is not None:
                await self.cluster.stop()

    # -- where things are ----------------------------------------------------------------

    def http_url(self) -> str:
        """Base URL of the first instance, without a trailing slash."""
        return self.world.http_url

    def grpc_address(self) -> str:
        return self.world.grpc_address

    def tenant_slug(self) -> str:
        return self.world.slug

    def user_token(self) -> str:
        """A user token of the tenant: it may open the tenant's streams."""
        return self.world.user.token

    def worker_token(self) -> str:
        """A worker token of the tenant: it may publish events."""
        return self.world.worker.token

    # -- clients -------------------------------------------------------------------------

    def grpc_client(self) -> pb_grpc.TaskExecutionAsyncStub:
        """The generated ``TaskExecution`` stub, on a channel that sends the worker token with
        every call (unless a call brings its own ``authorization`` metadata)."""
        if self._channel is None:
            self._channel = aio_channel(self.grpc_address(), token=self.worker_token())
        return pb_grpc.TaskExecutionStub(self._channel)

    def publisher(self) -> Publisher:
        """A publisher with typed helpers (``token``, ``progress``...) and the worker token."""
        return self.world.publisher()

    async def create_workflow(self, kind: str = "test", *, parent: str | None = None) -> str:
        """A new workflow execution of the tenant; returns its id."""
        return await self.world.workflow(parent, kind)

    async def create_task(self, workflow_id: str | None = None, kind: str = "test") -> str:
        """A new task execution, in ``workflow_id`` or standalone; returns its id."""
        return await self.world.task(workflow_id, kind)

    async def subscribe(
        self,
        workflow_id: str,
        *,
        consolidated: bool = False,
        last_event_id: str | None = None,
        token: str | None = None,
    ) -> SSEStream:
        """An open SSE stream of the workflow, with the user token (or ``token``)."""
        return await self.world.subscribe(
            workflow_id, consolidated=consolidated, last_event_id=last_event_id, token=token
        )

    async def subscribe_task(self, task_id: str, *, token: str | None = None) -> SSEStream:
        return await self.world.subscribe_task(task_id, token=token)
