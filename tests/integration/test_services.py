"""Integration tests for harness.services: real PostgreSQL and real nats-server, never fakes."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.errors import NotFoundError

from harness.services import (
    ContainerNats,
    ContainerPostgres,
    EmbeddedNats,
    EmbeddedPostgres,
    ExternalNats,
    ExternalPostgres,
    ManagedService,
    Service,
    ServiceUnavailable,
    docker_unavailable_reason,
    free_port,
    nats_service,
    postgres_service,
)

pytestmark = pytest.mark.integration


async def _started(svc: ManagedService) -> None:
    try:
        await svc.start()
    except ServiceUnavailable as exc:
        pytest.skip(exc.reason)


@pytest.fixture
async def pg() -> AsyncIterator[EmbeddedPostgres]:
    svc = EmbeddedPostgres()
    await _started(svc)
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedNats]:
    svc = EmbeddedNats()
    await _started(svc)
    try:
        yield svc
    finally:
        await svc.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- PostgreSQL -----------------------------------------------------------------------------------


async def test_embedded_postgres_serves_tcp(pg: EmbeddedPostgres) -> None:
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert await pg.ready()
    conn = await asyncpg.connect(pg.url)
    try:
        assert await conn.fetchval("SELECT inet_server_port()") == pg.port  # TCP, not a socket
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
        assert await conn.fetchval("SHOW max_connections") == "300"
        assert await conn.fetchval("SHOW fsync") == "off"
    finally:
        await conn.close()
    assert "ready to accept connections" in pg.log_tail(200)


async def test_create_database_returns_url_of_fresh_database(pg: EmbeddedPostgres) -> None:
    url = await pg.create_database("harness_fresh")
    assert url == pg.url_for("harness_fresh")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "harness_fresh"
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname='public'") == 0
        await conn.execute("CREATE TABLE t (x int)")
    finally:
        await conn.close()
    with pytest.raises(ValueError, match="identifier"):
        await pg.create_database('bad"; DROP DATABASE postgres; --')


async def test_pause_refuses_connections_and_resume_keeps_data(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    finally:
        await conn.close()
    port = pg.port

    await pg.pause()
    assert not await pg.ready()
    assert not _listening(port)
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(pg.url, timeout=2)

    await pg.resume()
    assert pg.port == port
    assert await pg.ready()
    conn = await asyncpg.connect(pg.url)
    try:
        assert await conn.fetchval("SELECT x FROM kept") == 42
    finally:
        await conn.close()


async def test_kill_is_a_crash_and_resume_recovers(pg: EmbeddedPostgres) -> None:
    pg.kill()
    assert not await pg.ready()
    assert not _listening(pg.port)
    await pg.resume()
    assert await pg.ready()
    assert "recovery" in pg.log_tail(200)


async def test_stop_removes_temp_dir_and_is_idempotent(tmp_path: Path) -> None:
    svc = EmbeddedPostgres(base_dir=tmp_path)
    await _started(svc)
    tmp, port = svc.tmp_dir, svc.port
    assert tmp is not None and tmp.parent == tmp_path
    assert (tmp / "data" / "PG_VERSION").exists()
    await svc.stop()
    assert not tmp.exists()
    assert not _listening(port)
    assert not await svc.ready()
    await svc.stop()


async def test_external_postgres_checks_reachability(pg: EmbeddedPostgres) -> None:
    ext = ExternalPostgres(pg.url)
    await ext.start()
    assert await ext.ready()
    await ext.stop()
    assert await pg.ready()  # stopping an external service leaves the server alone
    dead = ExternalPostgres(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(ServiceUnavailable, match="not reachable") as info:
        await dead.start()
    assert "secret" not in info.value.reason


def test_external_postgres_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ServiceUnavailable, match="DATABASE_URL"):
        ExternalPostgres()


# -- NATS -----------------------------------------------------------------------------------------


async def test_embedded_nats_has_jetstream(broker: EmbeddedNats) -> None:
    assert broker.url == f"nats://127.0.0.1:{broker.port}"
    assert await broker.ready()
    nc = await nats.connect(broker.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="TASKS", subjects=["tasks.>"])
        ack = await js.publish("tasks.1", b"hello")
        assert (ack.stream, ack.seq) == ("TASKS", 1)
    finally:
        await nc.close()
    assert "Server is ready" in broker.log_tail(100)


async def test_restart_same_port_client_reconnects_and_stream_survives(
    broker: EmbeddedNats,
) -> None:
    disconnected, reconnected = asyncio.Event(), asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    async def on_error(exc: Exception) -> None:
        return None

    nc = await nats.connect(
        broker.url,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    try:
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        await js.publish("events.a", b"1")
        port, pid = broker.port, broker.pid

        await broker.restart()
        assert broker.port == port and broker.pid != pid
        await asyncio.wait_for(disconnected.wait(), 10)
        await asyncio.wait_for(reconnected.wait(), 15)  # by itself, no help from the test

        ack = await js.publish("events.b", b"2")
        assert (ack.stream, ack.seq) == ("EVENTS", 2)  # JetStream state kept across restart
    finally:
        await nc.close()


async def test_restart_without_store_forgets_streams(broker: EmbeddedNats) -> None:
    nc = await nats.connect(broker.url)
    try:
        await nc.jetstream().add_stream(name="GONE", subjects=["gone.>"])
    finally:
        await nc.close()
    await broker.restart(keep_store=False, graceful=False)
    nc = await nats.connect(broker.url)
    try:
        with pytest.raises(NotFoundError):
            await nc.jetstream().stream_info("GONE")
    finally:
        await nc.close()


async def test_nats_kill_then_start_on_same_port(broker: EmbeddedNats) -> None:
    port = broker.port
    broker.kill()
    assert broker.pid is None
    assert not await broker.ready()
    assert not _listening(port)
    await broker.start()
    assert broker.port == port and await broker.ready()


async def test_nats_stop_removes_temp_dir() -> None:
    svc = EmbeddedNats()
    await _started(svc)
    tmp, port = svc.tmp_dir, svc.port
    assert tmp is not None and (tmp / "store").is_dir()
    await svc.stop()
    assert not tmp.exists()
    assert not _listening(port)
    await svc.stop()


async def test_async_with_cleans_up_when_the_body_fails() -> None:
    svc = EmbeddedNats()
    with pytest.raises(RuntimeError, match="boom"):
        async with svc:
            tmp, port = svc.tmp_dir, svc.port
            raise RuntimeError("boom")
    assert tmp is not None and not tmp.exists()
    assert not _listening(port)


async def test_external_nats_checks_reachability(broker: EmbeddedNats) -> None:
    ext = ExternalNats(broker.url)
    await ext.start()
    assert await ext.ready()
    await ext.stop()
    assert await broker.ready()
    with pytest.raises(ServiceUnavailable, match="not reachable"):
        await ExternalNats(f"nats://127.0.0.1:{free_port()}").start()


# -- containers, protocol, resolvers --------------------------------------------------------------


@pytest.mark.parametrize("provider", [ContainerPostgres, ContainerNats])
async def test_container_providers_raise_service_unavailable_naming_docker(
    provider: type[ContainerPostgres] | type[ContainerNats],
) -> None:
    if await asyncio.to_thread(docker_unavailable_reason) is None:
        pytest.skip("a Docker engine answers here; this test covers machines without one")
    svc = provider()
    with pytest.raises(ServiceUnavailable) as info:
        await svc.start()
    assert "Docker" in info.value.reason
    await svc.stop()  # harmless after a failed start


def test_every_provider_satisfies_the_protocol() -> None:
    providers: list[Service] = [
        ExternalPostgres("postgresql://postgres@127.0.0.1:1/postgres"),
        EmbeddedPostgres(),
        ContainerPostgres(),
        ExternalNats("nats://127.0.0.1:1"),
        EmbeddedNats(),
        ContainerNats(),
    ]
    members = ["name", "url", "start", "stop", "ready", "log_tail", "__aenter__", "__aexit__"]
    for svc in providers:
        for member in members:
            assert inspect.getattr_static(svc, member, None) is not None, (svc, member)
        assert svc.name


async def test_embedded_urls_are_known_before_start() -> None:
    broker = EmbeddedNats()
    url = broker.url
    async with broker:
        assert broker.url == url and await broker.ready()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_resolvers_honour_explicit_url(pg: EmbeddedPostgres, broker: EmbeddedNats) -> None:
    db = await postgres_service(pg.url)
    bus = await nats_service(broker.url)
    try:
        assert isinstance(db, ExternalPostgres) and db.url == pg.url
        assert isinstance(bus, ExternalNats) and bus.url == broker.url
        assert await db.ready() and await bus.ready()
    finally:
        await db.stop()
        await bus.stop()
    assert await pg.ready() and await broker.ready()


async def test_resolvers_use_env_vars(
    pg: EmbeddedPostgres, broker: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg.url)
    monkeypatch.setenv("NATS_URL", broker.url)
    db, bus = await postgres_service(), await nats_service()
    assert isinstance(db, ExternalPostgres) and db.url == pg.url
    assert isinstance(bus, ExternalNats) and bus.url == broker.url


async def test_resolvers_do_not_fall_back_from_an_unreachable_url() -> None:
    with pytest.raises(ServiceUnavailable, match="not reachable"):
        await postgres_service(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(ServiceUnavailable, match="not reachable"):
        await nats_service(f"nats://127.0.0.1:{free_port()}")


async def test_resolvers_fall_back_to_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("NATS_URL", raising=False)
    db = await postgres_service()
    try:
        bus = await nats_service()
        try:
            assert isinstance(db, EmbeddedPostgres) and await db.ready()
            assert isinstance(bus, EmbeddedNats) and await bus.ready()
        finally:
            await bus.stop()
    finally:
        await db.stop()


async def test_resolver_error_lists_every_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    if await asyncio.to_thread(docker_unavailable_reason) is None:
        pytest.skip("a Docker engine answers here; the container fallback would succeed")
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("NATS_SERVER_BIN", "/nonexistent/nats-server")
    with pytest.raises(ServiceUnavailable) as info:
        await nats_service()
    assert "NATS_URL" in info.value.reason
    assert "nats-server binary not found" in info.value.reason
    assert "Docker engine not available" in info.value.reason
    assert len(info.value.reasons) == 3
