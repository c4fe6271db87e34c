"""Assemble one server instance: store, bus, auth, the aiohttp app and the grpc.aio server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from types import TracebackType
from typing import Self

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from taskstream_proto import task_streaming_pb2

from . import http_admin, http_ingest, http_meta, http_streams
from .auth import ADMIN_PREFIX
from .bus import Bus, Notice, TokenRevoked
from .bus_memory import InMemoryBus
from .context import CONTEXT, ServerContext
from .directory import Directory
from .errors import Unavailable
from .extensions import Extension
from .grpc_service import TaskExecutionService, add_to_server
from .http_guard import ConnectionGuard, GuardedRunner
from .http_problems import add_request_id, problem_middleware
from .metrics import Metrics
from .pg_embedded import EmbeddedPostgres
from .policies import Policies
from .settings import Settings, admin_token_weakness
from .store import Store
from .streams import StreamRegistry

log = logging.getLogger(__name__)
SERVICE_NAME = task_streaming_pb2.DESCRIPTOR.services_by_name["TaskExecution"].full_name


def create_app(ctx: ServerContext) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=1024 * 1024)
    app[CONTEXT] = ctx
    app.on_response_prepare.append(add_request_id)
    base = "/api/tenants/{tenant}/stream"
    # `{id:[^/]+}`: any spelling reaches the handler, which answers 400 for all but the
    # canonical one (aiohttp's default `{id}` would not route braces: a 404 instead).
    ident = "{id:[^/]+}"
    app.router.add_get(f"{base}/workflows/{ident}", http_streams.stream_workflow, allow_head=False)
    app.router.add_get(
        f"{base}/workflows/{ident}/consolidated", http_streams.stream_consolidated, allow_head=False
    )
    app.router.add_get(f"{base}/tasks/{ident}", http_streams.stream_task, allow_head=False)
    app.router.add_post("/api/tenants/{tenant}/task-data", http_ingest.post_task_data)
    http_admin.add_routes(app)
    http_meta.add_routes(app)
    return app


async def create_bus(settings: Settings) -> Bus:
    """In-memory unless a NATS URL is configured (the seed's `nats.enabled`)."""
    if settings.nats_enabled:
        from .bus_nats import open_nats_bus

        return open_nats_bus(settings)
    return InMemoryBus(
        replay_max_events=settings.replay_max_events,
        replay_max_age=settings.replay_max_age,
        subscriber_buffer=settings.subscriber_buffer,
    )


class Server:
    """One instance: `async with Server(settings) as server:` serves until the block ends.

    Ports 0 pick free ones; `http_url` and `grpc_address` tell which. An `extension` replaces
    parts of it (see `extensions`)."""

    def __init__(self, settings: Settings, *, extension: Extension | None = None) -> None:
        self.extension = extension if extension is not None else Extension()
        settings = self.extension.settings(settings)
        if settings.admin_token is None:
            settings = settings.with_changes(admin_token=ADMIN_PREFIX + secrets.token_urlsafe(32))
        weakness = admin_token_weakness(settings.admin_token or "")
        if weakness:
            raise ValueError(f"admin_token {weakness}")
        self.settings = settings
        self.http_url = ""
        self.grpc_address = ""
        self.ctx: ServerContext | None = None
        self._pg: EmbeddedPostgres | None = None
        self._runner: GuardedRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._exit = contextlib.AsyncExitStack()

    @property
    def app(self) -> web.Application:
        assert self._runner is not None, "the server is not started"
        return self._runner.app

    @property
    def admin_token(self) -> str:
        assert self.settings.admin_token is not None
        return self.settings.admin_token

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        s = self.settings
        url = s.database_url
        if url is None:
            self._pg = EmbeddedPostgres(s.data_dir, ephemeral=s.ephemeral)
            url = await self._pg.start()
        store = await Store.connect(url)
        self._exit.push_async_callback(store.close)
        bus = self.extension.bus(await create_bus(s))
        await bus.start()
        self._exit.push_async_callback(bus.close)
        assert s.admin_token is not None
        metrics = Metrics(s.metrics_dir)
        ctx = ServerContext(
            settings=s,
            store=store,
            bus=bus,
            auth=self.extension.authenticator(store, s.admin_token, cache_ttl=s.token_cache_ttl),
            directory=Directory(store, s.ownership_cache_size),
            metrics=metrics,
            streams=StreamRegistry(bus, s.max_streams_per_tenant),
            policies=self.extension.policies(Policies()),
        )
        self.ctx = ctx
        bus.on_notice(self._on_notice)
        await self._start_grpc(ctx)
        guard = ConnectionGuard(s.request_head_timeout, s.max_unauthenticated_connections, metrics)
        self._runner = GuardedRunner(
            create_app(ctx), guard, handler_cancellation=True, shutdown_timeout=s.shutdown_grace,
            access_log=None,
        )  # fmt: skip
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.http_host, s.http_port, reuse_port=s.reuse_port or None)
        await site.start()
        sockets = self._runner.addresses
        port = sockets[0][1]
        self.http_url = f"http://{_url_host(s.http_host)}:{port}"
        self._tasks.append(asyncio.create_task(self._watch_revocations(), name="revocations"))

    async def _start_grpc(self, ctx: ServerContext) -> None:
        s = self.settings
        server = grpc.aio.server(
            # Room for the largest batch, so that the batch limit answers, with its message.
            options=[
                ("grpc.max_receive_message_length", s.max_batch_bytes + 64 * 1024),
                ("grpc.so_reuseport", 1 if s.reuse_port else 0),
            ],
        )
        add_to_server(TaskExecutionService(ctx), server)
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port = server.add_insecure_port(f"{_url_host(s.grpc_host)}:{s.grpc_port}")
        if port == 0:
            raise SystemExit(f"cannot listen for gRPC on {s.grpc_host}:{s.grpc_port}")
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._grpc = server
        self.grpc_address = f"{_url_host(s.grpc_host)}:{port}"
        ctx.grpc_address = self.grpc_address

    async def _on_notice(self, notice: Notice) -> None:
        assert self.ctx is not None
        if isinstance(notice, TokenRevoked):
            import uuid

            self.ctx.auth.revoked(uuid.UUID(notice.token_id))
        await self.ctx.streams.on_notice(notice)

    async def _watch_revocations(self) -> None:
        """Revocations made through any instance reach this one within the recheck interval,
        whether or not the bus carried the notice."""
        assert self.ctx is not None
        ctx = self.ctx
        since: dt.datetime | None = None
        while True:
            try:
                if since is None:
                    since = await ctx.store.now()
                for token_id, revoked_at in await ctx.store.revoked_since(since):
                    ctx.auth.revoked(token_id)
                    ctx.streams.revoke(token_id)
                    since = max(since, revoked_at)
            except Unavailable:
                log.warning("revocation check skipped: store unavailable")
            await asyncio.sleep(self.settings.auth_recheck_interval)

    async def stop(self) -> None:
        """Stop accepting, end open streams cleanly, then release everything."""
        if self.ctx is not None:
            self.ctx.shutting_down = True
            self.ctx.streams.stop_all("server shutting down")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._grpc is not None:
            await self._grpc.stop(grace=min(1.0, self.settings.shutdown_grace))
            self._grpc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._exit.aclose()
        if self._pg is not None:
            await self._pg.stop()
            self._pg = None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
