"""``SyncTestHarness``: :class:`harness.TestHarness` for tests that are not asyncio.

    with SyncTestHarness.start() as harness:
        workflow_id = harness.create_workflow("test-wf")
        stream = harness.subscribe(workflow_id)            # a blocking SSE connection
        harness.publisher().send("token", "hi", workflow_id=workflow_id, task_id=task_id)
        event = next(stream.events(read_timeout=5))

The asynchronous harness runs on a private event loop in a background thread; every method
here waits for its result. The clients it hands out are the blocking ones (the Locust users'
SSE connection, the sync publisher and a sync gRPC stub), so nothing of the loop leaks out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

from .publisher import SyncPublisher
from .targets import Target
from .testharness import TestHarness
from .wire.blocking import SSEConnection
from .wire.grpc_calls import sync_channel

__all__ = ["SyncTestHarness"]

T = TypeVar("T")


class SyncTestHarness:
    """A :class:`TestHarness` behind blocking methods; start with :meth:`start`, close with
    :meth:`close` or ``with``."""

    __test__ = False

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self._harness: TestHarness | None = None
        self._channel: grpc.Channel | None = None
        self._opened: list[SSEConnection | SyncPublisher] = []

    @classmethod
    def start(
        cls,
        target: str | Path | Target | None = None,
        *,
        name: str | None = None,
        instances: int = 1,
        settings: Mapping[str, Any] | None = None,
        timeout: float = 180.0,
    ) -> Self:
        """As :meth:`TestHarness.start`, waiting at most ``timeout`` seconds."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="sync-test-harness", daemon=True)
        thread.start()
        sync = cls(loop, thread)
        try:
            started = TestHarness.start(target, name=name, instances=instances, settings=settings)
            sync._harness = sync._run(started, timeout)
        except BaseException:
            sync._stop_loop()
            raise
        return sync

    @property
    def harness(self) -> TestHarness:
        """The asynchronous harness (its methods must run on this facade's loop)."""
        if self._harness is None:
            raise RuntimeError("the harness is closed")
        return self._harness

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        """Close every client handed out, the tenant's clients and any embedded cluster."""
        for opened in self._opened:
            opened.close()
        self._opened.clear()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        try:
            if self._harness is not None:
                self._run(self._harness.close(), 120.0)
                self._harness = None
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the asynchronous harness's answers ------------------------------------------------

    def http_url(self) -> str:
        return self.harness.http_url()

    def grpc_address(self) -> str:
        return self.harness.grpc_address()

    def tenant_slug(self) -> str:
        return self.harness.tenant_slug()

    def user_token(self) -> str:
        return self.harness.user_token()

    def worker_token(self) -> str:
        return self.harness.worker_token()

    def create_workflow(self, kind: str = "test", *, parent: str | None = None) -> str:
        return self._run(self.harness.create_workflow(kind, parent=parent))

    def create_task(self, workflow_id: str | None = None, kind: str = "test") -> str:
        return self._run(self.harness.create_task(workflow_id, kind))

    # -- blocking clients ----------------------------------------------------------------

    def grpc_client(self) -> pb_grpc.TaskExecutionStub:
        """The generated stub on a blocking channel that sends the worker token."""
        if self._channel is None:
            self._channel = sync_channel(self.grpc_address(), token=self.worker_token())
        return pb_grpc.TaskExecutionStub(self._channel)

    def publisher(self) -> SyncPublisher:
        """A blocking publisher with the worker token (closed with the harness)."""
        publisher = SyncPublisher(self.grpc_address(), self.worker_token())
        self._opened.append(publisher)
        return publisher

    def subscribe(
        self, workflow_id: str, *, last_event_id: str | None = None, timeout: float = 10.0
    ) -> SSEConnection:
        """An open blocking SSE connection to the workflow's stream, with the user token.

        Raises ``harness.wire.blocking.HTTPStatusError`` for an answer other than 200.
        """
        world = self.harness.world
        conn = SSEConnection(
            world.workflow_url(workflow_id),
            self.user_token(),
            last_event_id=last_event_id,
            timeout=timeout,
        )
        self._opened.append(conn)
        conn.open()
        return conn
