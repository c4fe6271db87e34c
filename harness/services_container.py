"""The shared part of the container providers (testcontainers and a Docker engine), and the one
check of whether containers can be used here; the providers themselves live beside their service
(:mod:`harness.services_postgres`, :mod:`harness.services_nats`)."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import subprocess
from typing import Any

from harness.services import ManagedService, ServiceUnavailable, wait_until

__all__ = ["ContainerService", "docker_unavailable_reason"]


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
