"""Fixtures for the project's own tests: a real PostgreSQL per test process (from the harness),
and reference servers started in-process on free ports with short timings."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from harness.cluster import ServerProcess
from harness.services import Service, ServiceUnavailable, postgres_service
from harness.world import TenantWorld
from reference_server.app import Server
from reference_server.extensions import Extension
from reference_server.settings import Settings

ServerFactory = Callable[..., Awaitable[Server]]

# The suite runs on small shared machines (CI: 2 cores, xdist on both), where how long Hypothesis
# takes to draw an example says nothing about the code under test: time is no failure here.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")

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


ATTACK_TABLE = "attack table"


class AttackTable:
    """Rows of attack, expected and observed behaviour, kept as a report section of the test so
    the table reaches the terminal summary (and CI logs) even from an xdist worker."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, str, bool]] = []

    def row(self, attack: str, expected: str, observed: object, ok: bool) -> None:
        self.rows.append((attack, expected, str(observed), ok))

    def failures(self) -> list[str]:
        return [f"{a}: expected {e}, observed {o}" for a, e, o, ok in self.rows if not ok]

    def render(self) -> str:
        head = ("attack", "expected", "observed", "")
        rows = [head, *((a, e, o, "ok" if ok else "FAIL") for a, e, o, ok in self.rows)]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [
            " | ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]).rstrip() for r in rows
        ]
        lines.insert(1, "-+-".join("-" * w for w in [*widths, 4]))
        passed = sum(ok for *_, ok in self.rows)
        summary = f"{passed} of {len(self.rows)} as expected"
        return "\n".join([self.title, *lines, summary]) + "\n"


@pytest.fixture
def attack_table(request: pytest.FixtureRequest) -> Iterator[AttackTable]:
    """Collect rows; the table is attached to the test's report whether it passes or fails."""
    table = AttackTable(request.node.name)
    yield table
    request.node.add_report_section("call", ATTACK_TABLE, table.render())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reports in terminalreporter.stats.values():
        for report in reports:
            for title, text in getattr(report, "sections", ()):
                if ATTACK_TABLE in title and report.when == "teardown":
                    terminalreporter.write_sep("=", ATTACK_TABLE)
                    terminalreporter.write(text)


@contextlib.contextmanager
def server_process(
    name: str, database_url: str, log_dir: Path, admin_token: str, **settings: str
) -> Iterator[ServerProcess]:
    """A reference server as its own process (RSS and logs of its own), `TASKSTREAM_*` settings
    from keyword arguments; for module-scoped fixtures of synchronous tests' async bodies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.update({f"TASKSTREAM_{k.upper()}": v for k, v in settings.items()})
    env.update(TASKSTREAM_DATABASE_URL=database_url, TASKSTREAM_ADMIN_TOKEN=admin_token)
    process = ServerProcess(name, env, log_dir)
    asyncio.run(process.start())
    try:
        yield process
    finally:
        asyncio.run(process.stop())
