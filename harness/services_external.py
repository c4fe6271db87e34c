"""The provider for servers someone else runs, shared by PostgreSQL and NATS."""

from __future__ import annotations

import os

from harness.services import ManagedService, ServiceUnavailable, redact


class ExternalService(ManagedService):
    """A server someone else runs (an explicit URL or an environment variable): start and stop
    only check that it answers. Subclasses name the component, the variable and the probe."""

    component = "service"
    env_var = ""

    def __init__(self, url: str | None = None) -> None:
        super().__init__()
        chosen = url or os.environ.get(self.env_var)
        if not chosen:
            raise ServiceUnavailable(
                f"{self.component}: no URL given and ${self.env_var} is not set"
            )
        self._url = chosen

    @property
    def url(self) -> str:
        return self._url

    async def probe(self) -> str | None:
        """None when the server answers, else why not."""
        raise NotImplementedError

    async def start(self) -> None:
        error = await self.probe()
        if error is not None:
            raise ServiceUnavailable(
                f"{self.component} at {redact(self._url)} not reachable: {error}"
            )

    async def stop(self) -> None:
        return None

    async def ready(self) -> bool:
        return await self.probe() is None
