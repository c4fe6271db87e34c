"""Reference-server processes on free ports, sharing one PostgreSQL and one NATS, with the
fault injection tests need (stop, kill, restart, pause, resume).

    async with ReferenceCluster(instances=2) as cluster:
        target = cluster.target()
        cluster.instances[0].kill()

The cluster talks to the servers only over the wire: it runs `python -m reference_server.cli`
(or `command`, e.g. a deliberately broken variant for the conformance suite's self-test).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp

from .services import Service, free_port, nats_service, postgres_service
from .targets import PROFILES, Target
from .wire.aio import request

if TYPE_CHECKING:  # imported where it starts: the NATS client is in the `server` extra only
    from .nats_cluster import NatsCluster

_READY = re.compile(r"READY http=(\S+) grpc=(\S+)")
DEFAULT_COMMAND = (sys.executable, "-m", "reference_server.cli")
# Settings a target file declares when the cluster sets them (the server's defaults otherwise).
_DECLARED_SETTINGS = (
    "max_streams_per_tenant",
    "subscriber_buffer",
    "max_payload_bytes",
    "max_batch_events",
)


class ServerProcess:
    """One `reference-server serve` process. Ports are fixed at the first start, so a restart
    comes back on the same addresses (clients reconnect as they would in production).

    Plain `subprocess.Popen`, not asyncio's: the process is not tied to the event loop that
    started it, so session-wide clusters work from every test's loop."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, command: Sequence[str] | None = None
    ) -> None:
        self.name = name
        self._env = env
        # The program before `serve ...`; anything that speaks `reference-server serve` flags.
        self._command = list(command or DEFAULT_COMMAND)
        self.log_path = log_dir / f"{name}.log"
        self._out_path = log_dir / f"{name}.out"
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    async def start(self, timeout: float = 30.0) -> None:
        started = time.monotonic()
        args = [*self._command, "serve",
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]  # fmt: skip
        self._out_path.write_bytes(b"")
        with self.log_path.open("ab") as log, self._out_path.open("ab") as out:
            # Popen returns at once (fork+exec); the loop-agnostic handle is the point.
            self._process = subprocess.Popen(  # noqa: S603, ASYNC220
                args, env=self._env, stdout=out, stderr=log
            )
        deadline = started + timeout
        while not _READY.search(self._out_path.read_text(errors="replace")):
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.02)
        self.startup_seconds = time.monotonic() - started

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful), SIGKILL after `timeout`; returns the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout: float = 10.0) -> int:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while (code := self._process.poll()) is None:
            if time.monotonic() > deadline:
                self.kill()
                return self._process.wait()
            await asyncio.sleep(0.02)
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its sockets open."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGCONT)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


class ReferenceCluster:
    """PostgreSQL (+ NATS JetStream when `nats`) and `instances` servers sharing them.

    `settings` become `TASKSTREAM_*` variables (e.g. `idle_timeout=5`). Services come from
    `harness.services` (explicit URL > environment > embedded wheel > container); with
    `nats_nodes` > 1 NATS is a `NatsCluster` of that many embedded nodes, and the servers get
    every node's URL and replicated, file-backed streams unless `settings` say otherwise."""

    def __init__(
        self,
        instances: int = 2,
        *,
        nats: bool = True,
        database_url: str | None = None,
        nats_url: str | None = None,
        nats_nodes: int = 1,
        settings: dict[str, Any] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        if instances > 1 and not nats:
            raise ValueError("several instances share streams only through NATS")
        if nats_nodes > 1 and (nats_url is not None or not nats):
            raise ValueError("nats_nodes > 1 starts its own NATS cluster: give no nats_url")
        self._count = instances
        self._use_nats = nats
        self._database_url = database_url
        self._nats_url = nats_url
        self.nats_nodes = nats_nodes
        self.settings = dict(settings or {})
        self.command = list(command) if command is not None else None
        self.admin_token = "fat_" + secrets.token_urlsafe(32)
        self.postgres: Service | None = None
        self.nats: Service | None = None
        self.instances: list[ServerProcess] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="taskstream-cluster-"))
        self.startup_seconds = 0.0
        # What the servers announce they keep for resume (their discovery document).
        self.retention: dict[str, float] = {}

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
        started = time.monotonic()
        wanted = [postgres_service(self._database_url)]
        if self._use_nats:
            wanted.append(self._start_nats())
        results = await asyncio.gather(*wanted, return_exceptions=True)
        services = [r for r in results if not isinstance(r, BaseException)]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            for service in services:  # do not leave the one that started running
                await service.stop()
            raise failures[0]
        self.postgres = services[0]
        self.nats = services[1] if self._use_nats else None
        env = self._environment()
        self.instances = [
            ServerProcess(f"server-{i}", env, self._tmp, self.command) for i in range(self._count)
        ]
        await asyncio.gather(*(i.start() for i in self.instances))
        self.retention = await _announced_retention(self.instances[0].http_url)
        self.startup_seconds = time.monotonic() - started

    async def _start_nats(self) -> Service:
        if self.nats_nodes <= 1:
            return await nats_service(self._nats_url)
        from .nats_cluster import NatsCluster

        nats_cluster = NatsCluster(self.nats_nodes, self._tmp)
        await nats_cluster.start()
        return nats_cluster

    @property
    def nats_cluster(self) -> NatsCluster | None:
        """The NATS nodes (kill, restart, pause any of them) when `nats_nodes` > 1."""
        if self.nats_nodes <= 1:
            return None
        from .nats_cluster import NatsCluster

        return self.nats if isinstance(self.nats, NatsCluster) else None

    def _environment(self) -> dict[str, str]:
        assert self.postgres is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
        env.pop("DATABASE_URL", None)
        env.pop("NATS_URL", None)
        env.update(
            TASKSTREAM_DATABASE_URL=self.postgres.url,
            TASKSTREAM_ADMIN_TOKEN=self.admin_token,  # env, not argv: `ps` shows argv
            TASKSTREAM_DATA_DIR=str(self._tmp / "data"),
            GRPC_VERBOSITY="ERROR",
        )
        if self.nats is not None:
            env["TASKSTREAM_NATS_URL"] = self.nats.url
        if self.nats_cluster is not None:
            env["TASKSTREAM_NATS_REPLICAS"] = str(min(3, self.nats_nodes))
            env["TASKSTREAM_NATS_STORAGE"] = "file"
        for name, value in self.settings.items():
            env[f"TASKSTREAM_{name.upper()}"] = str(value)
        return env

    async def add_instance(self) -> ServerProcess:
        instance = ServerProcess(
            f"server-{len(self.instances)}", self._environment(), self._tmp, self.command
        )
        self.instances.append(instance)
        await instance.start()
        return instance

    def target(self, name: str = "reference") -> Target:
        """The cluster as a conformance/load-test target (admin-API provisioner): its timings,
        the limits its settings set, and the retention its servers announce."""
        declared = {k: int(self.settings[k]) for k in _DECLARED_SETTINGS if k in self.settings}
        max_events = self.retention.get("maxEvents")
        max_age = self.retention.get("maxAgeSeconds")
        return Target(
            name=name,
            http_urls=[i.http_url for i in self.instances],
            grpc_addresses=[i.grpc_address for i in self.instances],
            profiles=PROFILES if self.nats is not None else PROFILES - {"multi-instance"},
            keepalive_interval=float(self.settings.get("keepalive_interval", 15.0)),
            idle_timeout=float(self.settings.get("idle_timeout", 300.0)),
            provisioner={"kind": "admin-api", "admin_token": self.admin_token},
            retention_events=None if max_events is None else int(max_events),
            retention_seconds=None if max_age is None else float(max_age),
            **declared,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {i.name}\n{i.log_tail()}" for i in self.instances)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.instances), return_exceptions=True)
        for service in (self.nats, self.postgres):
            if service is not None:
                await service.stop()
        import shutil

        shutil.rmtree(self._tmp, ignore_errors=True)


async def _announced_retention(http_url: str) -> dict[str, float]:
    """The ``retention`` of a server's discovery document ({} when it has none)."""
    try:
        async with aiohttp.ClientSession() as session:
            reply = await request(session, "GET", f"{http_url}/.well-known/task-streaming")
        retention = json.loads(reply.text).get("retention") if reply.status == 200 else None
    except (aiohttp.ClientError, ValueError, AttributeError):
        return {}
    if not isinstance(retention, dict):
        return {}
    return {k: float(v) for k, v in retention.items() if isinstance(v, int | float)}
