"""`reference-server serve --workers N`: N server processes on the same HTTP and gRPC ports.

The kernel spreads connections over the processes (SO_REUSEPORT: aiohttp's `reuse_port`, grpc's
`grpc.so_reuseport`). They share streams the way separate instances do, through NATS JetStream,
so the supervisor starts an embedded `nats-server -js` when no `--nats-url` is given, and an
embedded PostgreSQL when no `--database-url` is. It picks the ports (a port 0 becomes a free
one), the admin token and a PROMETHEUS_MULTIPROC_DIR (so `/metrics` on any worker sums all of
them), starts the workers with those settings, prints one `READY` line once every worker is
ready, restarts a worker that dies, and on SIGTERM/SIGINT stops them all (each one gracefully,
as a single server stops) before its own services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import fields

from .auth import ADMIN_PREFIX
from .settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)
_READY = re.compile(r"READY http=(\S+) grpc=(\S+)")
START_TIMEOUT = 60.0
# Settings a worker takes from the supervisor as TASKSTREAM_* variables; the rest are its own.
_NOT_PASSED = {"workers", "bootstrap", "instance_id", "metrics_dir", "ephemeral", "data_dir"}


class Worker:
    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index, self._env = index, env
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.ready.clear()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reference_server.cli", "serve",
            # A pipe nobody writes to: it closes when the supervisor dies, however it dies, and
            # the worker (--exit-with-stdin) stops instead of serving on alone.
            env=self._env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self.process), name=f"worker-{self.index}")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if _READY.search(line):
                self.ready.set()
            elif line:
                print(f"[worker {self.index}] {line}", flush=True)

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


OnReady = Callable[[str, str, str], None]  # http URL, gRPC address, admin token


async def supervise(config: Settings, stop: asyncio.Event, on_ready: OnReady | None = None) -> int:
    """Run `config.workers` workers until `stop` is set; returns the exit status. `on_ready`
    runs (in a thread) once all are ready, before the READY line."""
    from . import launch
    from .pg_embedded import EmbeddedPostgres

    exits = contextlib.AsyncExitStack()
    async with exits:
        if config.database_url is None:
            postgres = EmbeddedPostgres(config.data_dir, ephemeral=config.ephemeral)
            config = config.with_changes(database_url=await postgres.start())
            exits.push_async_callback(postgres.stop)
        if config.nats_url in (None, "embedded"):
            try:
                nats_server = await launch.start_nats(config.data_dir / "nats")
            except launch.EmbeddedUnavailable as error:
                raise SystemExit(str(error)) from None
            exits.push_async_callback(asyncio.to_thread, nats_server.terminate)
            config = config.with_changes(nats_url=nats_server.url)
        generated_admin = config.admin_token is None
        # In the data dir, not /tmp: a supervisor killed outright leaves it where its data is.
        config.data_dir.mkdir(parents=True, exist_ok=True)
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=config.data_dir)
        exits.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
        config = config.with_changes(
            http_port=config.http_port or _free_port(config.http_host),
            grpc_port=config.grpc_port or _free_port(config.grpc_host),
            admin_token=config.admin_token or ADMIN_PREFIX + secrets.token_urlsafe(32),
        )
        env = _environment(config, metrics_dir)
        workers = [Worker(i, env) for i in range(config.workers)]
        exits.push_async_callback(_stop_all, workers, config.shutdown_grace + 10)
        await asyncio.gather(*(w.start() for w in workers))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await _all_ready(workers)
        except (TimeoutError, RuntimeError) as error:
            print(f"workers did not start: {error}", file=sys.stderr, flush=True)
            return 1
        assert config.admin_token is not None
        if generated_admin:
            print(f"admin token (shown once): {config.admin_token}", flush=True)
        host = f"[{config.http_host}]" if ":" in config.http_host else config.http_host
        http_url = f"http://{host}:{config.http_port}"
        grpc_address = f"{host}:{config.grpc_port}"
        if on_ready is not None:
            await asyncio.to_thread(on_ready, http_url, grpc_address, config.admin_token)
        print(f"READY http={http_url} grpc={grpc_address} workers={config.workers}", flush=True)
        await _keep_running(workers, metrics_dir, stop)
    return 0


def _environment(config: Settings, metrics_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in _NOT_PASSED or value is None:
            continue
        env[ENV_PREFIX + f.name.upper()] = (
            str(int(value)) if isinstance(value, bool) else str(value)
        )
    env[ENV_PREFIX + "REUSE_PORT"] = "1"
    env[ENV_PREFIX + "EXIT_WITH_STDIN"] = "1"
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


async def _all_ready(workers: list[Worker]) -> None:
    async def one(worker: Worker) -> None:
        assert worker.process is not None
        ready = asyncio.ensure_future(worker.ready.wait())
        died = asyncio.ensure_future(worker.process.wait())
        await asyncio.wait([ready, died], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        died.cancel()
        if not worker.ready.is_set():
            raise RuntimeError(f"worker {worker.index} exited during startup")

    await asyncio.gather(*(one(w) for w in workers))


async def _keep_running(workers: list[Worker], metrics_dir: str, stop: asyncio.Event) -> None:
    """Until `stop`: a worker that exits on its own is restarted (its live gauges dropped)."""
    from prometheus_client import multiprocess

    waits = {asyncio.ensure_future(w.process.wait()): w for w in workers if w.process}
    stopping = asyncio.ensure_future(stop.wait())
    while True:
        done, _ = await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
        if stopping in done:
            for future in waits:
                future.cancel()
            return
        for future in done:
            worker = waits.pop(future)
            assert worker.process is not None
            log.warning("worker %d exited with %s; restarting it", worker.index, future.result())
            multiprocess.mark_process_dead(worker.process.pid, metrics_dir)  # type: ignore[no-untyped-call]
            await worker.start()
            assert worker.process is not None
            waits[asyncio.ensure_future(worker.process.wait())] = worker


async def _stop_all(workers: list[Worker], timeout: float) -> None:
    for worker in workers:
        worker.signal(signal.SIGTERM)
    waiting = [w.process.wait() for w in workers if w.process is not None]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*waiting)
    except TimeoutError:
        for worker in workers:
            worker.signal(signal.SIGKILL)
        await asyncio.gather(*(w.process.wait() for w in workers if w.process is not None))


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
