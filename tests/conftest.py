"""Fixtures for the project's own tests: a real PostgreSQL per test process (from the harness),
and reference servers started in-process on free ports with short timings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from harness.services import Service, ServiceUnavailable, postgres_service
from harness.world import TenantWorld
from reference_server.app import Server
from reference_server.extensions import Extension
from reference_server.settings import Settings

ServerFactory = Callable[..., Awaitable[Server]]

# Short but not racy: tests wait on events, these only bound how long a wait can be.
FAST = {"keepalive_interval": 1.0, "idle_timeout": 30.0, "auth_recheck_interval": 0.5}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres() -> AsyncIterator[Service]:
    try:
        service = await postgres_service()
    except ServiceUnavailable as exc:
        pytest.fail(f"PostgreSQL is required: {exc}")
    yield service
    await service.stop()


@pytest.fixture
def pg_url(postgres: Service) -> str:
    return postgres.url


@pytest.fixture
async def make_server(pg_url: str) -> AsyncIterator[ServerFactory]:
    """Start servers with `Settings` overrides (and an `extension`); all are stopped after the
    test."""
    servers: list[Server] = []

    async def make(*, extension: Extension | None = None, **overrides: Any) -> Server:
        values: dict[str, Any] = {
            "database_url": pg_url, "http_port": 0, "grpc_port": 0, **FAST, **overrides,
        }  # fmt: skip
        server = Server(Settings(**values), extension=extension)
        servers.append(server)
        await server.start()
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server()


@pytest.fixture
async def world(server: Server) -> AsyncIterator[TenantWorld]:
    w = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    yield w
    await w.close()


@pytest.fixture
async def other_world(server: Server) -> AsyncIterator[TenantWorld]:
    """A second tenant on the same server, for isolation tests."""
    w = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    yield w
    await w.close()
